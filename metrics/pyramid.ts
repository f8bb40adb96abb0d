// Laplacian pyramids of RGB image stacks, as cv2.pyrDown / pyrUp build them: the 5x5 binomial
// filter with mirrored edges. Step 1 of the SWD recipe (swd.ts).

/** scipy.ndimage's 'mirror' edge (cv2's BORDER_REFLECT_101): d c b | a b c d | c b a. */
const mirror = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);

// cv2.pyrDown's 5x5 binomial filter, separable: [1, 4, 6, 4, 1] / 16 along each axis.
const BINOMIAL = [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16];

/**
 * One channel-interleaved plane stack (count x n x n x 3) filtered with `taps` along x, then y,
 * keeping every `step`-th output row and column: step 2 is pyrDown, step 1 a plain convolution.
 */
function separable(src: Float32Array, count: number, n: number, taps: number[], step: number): Float32Array {
  const m = n / step;
  const tmp = new Float32Array(n * m * 3);
  const out = new Float32Array(count * m * m * 3);
  for (let img = 0; img < count; img++) {
    const base = img * n * n * 3;
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < m; x++) {
        let r = 0,
          g = 0,
          b = 0;
        for (let k = 0; k < 5; k++) {
          const o = base + (y * n + mirror(x * step + k - 2, n)) * 3;
          const t = taps[k];
          r += t * src[o];
          g += t * src[o + 1];
          b += t * src[o + 2];
        }
        const d = (y * m + x) * 3;
        tmp[d] = r;
        tmp[d + 1] = g;
        tmp[d + 2] = b;
      }
    }
    const obase = img * m * m * 3;
    for (let y = 0; y < m; y++) {
      for (let x = 0; x < m; x++) {
        let r = 0,
          g = 0,
          b = 0;
        for (let k = 0; k < 5; k++) {
          const o = (mirror(y * step + k - 2, n) * m + x) * 3;
          const t = taps[k];
          r += t * tmp[o];
          g += t * tmp[o + 1];
          b += t * tmp[o + 2];
        }
        const d = obase + (y * m + x) * 3;
        out[d] = r;
        out[d + 1] = g;
        out[d + 2] = b;
      }
    }
  }
  return out;
}

/** cv2.pyrDown: blur, keep even rows and columns. */
export function pyrDown(images: Float32Array, count: number, n: number): Float32Array {
  if (n % 2 !== 0) throw new RangeError(`pyrDown needs an even size, got ${n}`);
  return separable(images, count, n, BINOMIAL, 2);
}

/** cv2.pyrUp: zeros between the samples, then the binomial filter times 4 (2 along each axis). */
export function pyrUp(images: Float32Array, count: number, n: number): Float32Array {
  const N = 2 * n;
  const stuffed = new Float32Array(count * N * N * 3);
  for (let img = 0; img < count; img++) {
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < n; x++) {
        const s = ((img * n + y) * n + x) * 3;
        const d = ((img * N + 2 * y) * N + 2 * x) * 3;
        stuffed[d] = images[s];
        stuffed[d + 1] = images[s + 1];
        stuffed[d + 2] = images[s + 2];
      }
    }
  }
  return separable(
    stuffed,
    count,
    N,
    BINOMIAL.map((t) => 2 * t),
    1,
  );
}

/**
 * ProGAN's generate_laplacian_pyramid on count x size x size x 3 images: each level but the
 * last is the image at that scale minus its blurred-and-upsampled next level; the last is the
 * coarse image itself.
 */
export function laplacianPyramid(images: Float32Array, count: number, size: number, levels: number): Float32Array[] {
  const pyramid: Float32Array[] = [images.slice()];
  let n = size;
  for (let l = 1; l < levels; l++) {
    const down = pyrDown(pyramid[l - 1], count, n);
    const up = pyrUp(down, count, n / 2);
    const prev = pyramid[l - 1];
    for (let i = 0; i < prev.length; i++) prev[i] -= up[i];
    pyramid.push(down);
    n /= 2;
  }
  return pyramid;
}
