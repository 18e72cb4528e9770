// Frames per second, counted from requestAnimationFrame callbacks: the rate at which the page
// actually paints, which is what a person sees (and what the browser test records).

export class FpsMeter {
  constructor() {
    this.stamps = [];
  }

  /** Call once per frame. */
  frame(now) {
    this.stamps.push(now);
    while (this.stamps.length && now - this.stamps[0] > 1000) this.stamps.shift();
  }

  /** Frames in the last second. */
  get current() {
    return this.stamps.length;
  }
}

/** Counts animation frames for `ms` milliseconds; resolves to frames per second. */
export function measureFps(ms = 3000) {
  return new Promise((resolve) => {
    let frames = 0;
    let start = null;
    function step(now) {
      if (start === null) start = now;
      else frames++;
      if (now - start < ms) requestAnimationFrame(step);
      else resolve((frames * 1000) / (now - start));
    }
    requestAnimationFrame(step);
  });
}
