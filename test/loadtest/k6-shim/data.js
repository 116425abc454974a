export class SharedArray {
  constructor(_name, fn) {
    return fn();
  }
}
