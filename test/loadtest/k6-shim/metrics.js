import { metric } from './runtime.js';

class Metric {
  constructor(type, name) {
    this.type = type;
    this.name = name;
    metric(type, name, 0, { __declare: true });
  }
  add(value, tags) {
    metric(this.type, this.name, value, tags);
  }
}
export class Trend extends Metric {
  constructor(name) {
    super('trend', name);
  }
}
export class Rate extends Metric {
  constructor(name) {
    super('rate', name);
  }
}
export class Counter extends Metric {
  constructor(name) {
    super('counter', name);
  }
}
export class Gauge extends Metric {
  constructor(name) {
    super('gauge', name);
  }
}
