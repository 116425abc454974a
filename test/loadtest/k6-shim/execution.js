import { scenario, vu } from './runtime.js';

export default {
  scenario: { name: scenario.name, startTime: scenario.startTime, iterationInTest: scenario.iteration },
  vu: { idInTest: vu, idInInstance: vu },
};
