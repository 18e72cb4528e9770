// N-D Vivaldi coordinates onto the 2-D map, stably.
//
// The plane is the top two principal components of the peers' coordinates (PCA shows the most
// of the latency structure any linear map can), but PCA alone is unstable: eigenvectors come
// with an arbitrary sign, two nearly equal eigenvalues swap or spin, and one peer joining moves
// the axes. So each re-fit is (1) aligned to the previous basis by the 2-D orthogonal
// transform (rotation or reflection) that moves it least — orthogonal Procrustes — which pins
// sign and rotation, then (2) blended into the previous basis by a small step and
// re-orthonormalised. A peer joining therefore turns the map by at most a fraction of a degree
// per re-fit, and nobody jumps. Between re-fits the basis is fixed, so a peer moves on the map
// only when its own coordinate moves. The projection is orthonormal: map distance never
// exceeds coordinate distance (the height, an access delay, is not a position and is left out).

/** Fraction of the way to the new PCA basis taken per re-fit. */
const BLEND = 0.25;

export class Projection {
  constructor() {
    this.basis = null; // [u, v], unit and orthogonal, length D
    this.dims = 0;
  }

  /** Re-fits the basis to these vectors (arrays of equal length; others are ignored). */
  fit(vectors) {
    const dims = mostCommonLength(vectors);
    if (dims < 2) return;
    const vs = vectors.filter((v) => v && v.length === dims && v.every(Number.isFinite));
    if (dims !== this.dims || !this.basis) {
      this.dims = dims;
      this.basis = [unit(dims, 0), unit(dims, 1)];
    }
    if (vs.length < 3) return;
    const fresh = principalPlane(vs, dims, this.basis);
    const aligned = procrustes(fresh, this.basis);
    this.basis = orthonormalise([
      lerp(this.basis[0], aligned[0], BLEND),
      lerp(this.basis[1], aligned[1], BLEND),
    ]);
  }

  /** The 2-D position of a vector (ms), or null. */
  project(vec) {
    if (!this.basis || !vec || vec.length !== this.dims) return null;
    return [dot(vec, this.basis[0]), dot(vec, this.basis[1])];
  }
}

function mostCommonLength(vectors) {
  const counts = new Map();
  for (const v of vectors) if (v) counts.set(v.length, (counts.get(v.length) || 0) + 1);
  let best = 0;
  let n = 0;
  for (const [len, c] of counts) if (c > n) [best, n] = [len, c];
  return best;
}

/** The top two eigenvectors of the covariance, by power iteration started from `start`. */
function principalPlane(vs, dims, start) {
  const mean = new Array(dims).fill(0);
  for (const v of vs) for (let i = 0; i < dims; i++) mean[i] += v[i] / vs.length;
  const cov = Array.from({ length: dims }, () => new Array(dims).fill(0));
  for (const v of vs) {
    for (let i = 0; i < dims; i++) {
      const di = v[i] - mean[i];
      for (let j = i; j < dims; j++) cov[i][j] += di * (v[j] - mean[j]);
    }
  }
  for (let i = 0; i < dims; i++) for (let j = 0; j < i; j++) cov[i][j] = cov[j][i];
  // Orthogonal (subspace) iteration: 30 steps is plenty for an 8×8 matrix.
  let q = orthonormalise([start[0].slice(), start[1].slice()]);
  for (let k = 0; k < 30; k++) q = orthonormalise(q.map((b) => matVec(cov, b)), q);
  return q;
}

/** `fresh` turned (or mirrored) in its own plane to lie as close as possible to `old`. */
function procrustes(fresh, old) {
  const m = [[dot(old[0], fresh[0]), dot(old[0], fresh[1])], [dot(old[1], fresh[0]), dot(old[1], fresh[1])]];
  const rot = Math.atan2(m[1][0] - m[0][1], m[0][0] + m[1][1]);
  const rotScore = Math.hypot(m[1][0] - m[0][1], m[0][0] + m[1][1]);
  const ref = Math.atan2(m[0][1] + m[1][0], m[0][0] - m[1][1]);
  const refScore = Math.hypot(m[0][1] + m[1][0], m[0][0] - m[1][1]);
  let r;
  if (rotScore >= refScore) {
    const [c, s] = [Math.cos(rot), Math.sin(rot)];
    r = [[c, -s], [s, c]];
  } else {
    const [c, s] = [Math.cos(ref), Math.sin(ref)];
    r = [[c, s], [s, -c]];
  }
  return [0, 1].map((i) => fresh[0].map((_, d) => r[i][0] * fresh[0][d] + r[i][1] * fresh[1][d]));
}

/** Gram–Schmidt; a degenerate vector is replaced by the matching one of `fallback` or an axis. */
function orthonormalise(vs, fallback) {
  const out = [];
  for (let i = 0; i < vs.length; i++) {
    let v = vs[i].slice();
    for (const u of out) v = sub(v, scale(u, dot(v, u)));
    let n = Math.hypot(...v);
    if (!(n > 1e-12)) {
      v = fallback ? fallback[i].slice() : unit(v.length, i);
      for (const u of out) v = sub(v, scale(u, dot(v, u)));
      n = Math.hypot(...v) || 1;
    }
    out.push(scale(v, 1 / n));
  }
  return out;
}

const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
const sub = (a, b) => a.map((x, i) => x - b[i]);
const scale = (a, k) => a.map((x) => x * k);
const lerp = (a, b, t) => a.map((x, i) => x + (b[i] - x) * t);
const unit = (n, i) => Array.from({ length: n }, (_, j) => (j === i ? 1 : 0));
const matVec = (m, v) => m.map((row) => dot(row, v));
