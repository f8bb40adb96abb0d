// Generates the float32 GEMM and the im2col/col2im/packing loops behind the wasm backend's
// convolutions (worker/kernels/gemm.ts), and the per-channel loops of traced passes (fused-kernels.ts):
// batch statistics, leaky ReLU, bias sums and BatchNorm's gradients. The micro-kernels are
// unrolled by row count, which is why this is generated rather than written by hand. `npm run build:wasm` writes the text and
// compiles it twice: with relaxed-SIMD fused multiply-adds and with plain f32x4 mul + add.
//
// Layouts (every pointer a byte address in the tfjs wasm heap, every stride in bytes):
// - A, m x k: row i, column kk at a + i*lda + kk*4 ('n'); or transposed, at a + kk*lda + i*4 ('t').
// - B, k x n, packed: ceil(n/8) panels, each k rows of 8 floats (zeros past n), panel p at bp + p*k*32.
// - C, m x n: row i at c + i*ldc.

/** Rows of C a micro-kernel keeps in registers: MR x 8 floats, 2*MR v128 accumulators. */
export const MR = 5;
/** Rows of B (a k-block) a pass over the panels keeps in cache. */
export const KC = 512;
/**
 * Floats of A a block of rows holds (64 KB, an eighth of this machine's L2). Measured with KC on
 * the model's GEMM shapes: 256-1024 x 16-32 K floats move the rate less than the machine's noise,
 * while one block of all rows (B's panels outside) halves it.
 */
export const L2_FLOATS = 16384;

function kernel(rows: number, trans: boolean, fma: boolean): string {
  const name = `$k${trans ? 't' : 'n'}${rows}`;
  const acc = (r: number, v: number) => `$c${r}_${v}`;
  const rowPtr = (r: number) => (r === 0 ? '$a' : `$a${r}`);
  const lines: string[] = [];
  const locals = [];
  for (let r = 0; r < rows; r++) locals.push(`(local ${acc(r, 0)} v128) (local ${acc(r, 1)} v128)`);
  if (!trans) for (let r = 1; r < rows; r++) locals.push(`(local ${rowPtr(r)} i32)`);
  lines.push(
    `(func ${name} (param $a i32) (param $lda i32) (param $b i32) (param $c i32) (param $ldc i32) (param $k i32) (param $load i32)`,
  );
  lines.push(
    `  ${locals.join(' ')} (local $b0 v128) (local $b1 v128) (local $x v128) (local $end i32) (local $cc i32)`,
  );
  if (!trans)
    for (let r = 1; r < rows; r++)
      lines.push(`  (local.set ${rowPtr(r)} (i32.add (local.get $a) (i32.mul (local.get $lda) (i32.const ${r}))))`);
  lines.push('  (if (local.get $load) (then (local.set $cc (local.get $c))');
  for (let r = 0; r < rows; r++) {
    lines.push(
      `    (local.set ${acc(r, 0)} (v128.load (local.get $cc))) (local.set ${acc(r, 1)} (v128.load offset=16 (local.get $cc)))` +
        (r < rows - 1 ? ' (local.set $cc (i32.add (local.get $cc) (local.get $ldc)))' : ''),
    );
  }
  lines.push('  ))');
  lines.push('  (local.set $end (i32.add (local.get $b) (i32.shl (local.get $k) (i32.const 5))))');
  lines.push('  (block $done (loop $next (br_if $done (i32.ge_u (local.get $b) (local.get $end)))');
  lines.push('    (local.set $b0 (v128.load (local.get $b))) (local.set $b1 (v128.load offset=16 (local.get $b)))');
  for (let r = 0; r < rows; r++) {
    const splat = trans
      ? `(v128.load32_splat offset=${4 * r} (local.get $a))`
      : `(v128.load32_splat (local.get ${rowPtr(r)}))`;
    const madd = (v: number) =>
      fma
        ? `(f32x4.relaxed_madd (local.get $x) (local.get $b${v}) (local.get ${acc(r, v)}))`
        : `(f32x4.add (local.get ${acc(r, v)}) (f32x4.mul (local.get $x) (local.get $b${v})))`;
    lines.push(`    (local.set $x ${splat}) (local.set ${acc(r, 0)} ${madd(0)}) (local.set ${acc(r, 1)} ${madd(1)})`);
  }
  if (trans) lines.push('    (local.set $a (i32.add (local.get $a) (local.get $lda)))');
  else
    for (let r = 0; r < rows; r++)
      lines.push(`    (local.set ${rowPtr(r)} (i32.add (local.get ${rowPtr(r)}) (i32.const 4)))`);
  lines.push('    (local.set $b (i32.add (local.get $b) (i32.const 32)))');
  lines.push('    (br $next)))');
  for (let r = 0; r < rows; r++) {
    lines.push(
      `  (v128.store (local.get $c) (local.get ${acc(r, 0)})) (v128.store offset=16 (local.get $c) (local.get ${acc(r, 1)}))` +
        (r < rows - 1 ? ' (local.set $c (i32.add (local.get $c) (local.get $ldc)))' : ''),
    );
  }
  lines.push(')');
  return lines.join('\n');
}

/** Calls the micro-kernel for `$rows` (1..MR) rows, A as stored ($trans 0) or transposed. */
function dispatch(): string {
  const call = (t: string, r: number) =>
    `(call $k${t}${r} (local.get $a) (local.get $lda) (local.get $b) (local.get $c) (local.get $ldc) (local.get $k) (local.get $load))`;
  const chain = (t: string) => {
    let s = call(t, 1);
    for (let r = 2; r <= MR; r++)
      s = `(if (i32.eq (local.get $rows) (i32.const ${r})) (then ${call(t, r)}) (else ${s}))`;
    return s;
  };
  return [
    '(func $micro (param $rows i32) (param $trans i32) (param $a i32) (param $lda i32) (param $b i32) (param $c i32) (param $ldc i32) (param $k i32) (param $load i32)',
    `  (if (local.get $trans) (then ${chain('t')}) (else ${chain('n')})))`,
  ].join('\n');
}

/**
 * im2col and col2im walk the same windows: for each image, output pixel and kernel tap, one
 * segment of c floats of the image (x for im2col, dx for col2im) at $at, or none where the tap
 * falls in the padding, against one segment of the rows (`rows`: $dst or $cols) in order.
 */
function windowWalk(name: string, rows: string, doc: string, inside: string, outside: string): string {
  const image = name === 'im2col' ? '$x' : '$dx';
  const [first, last] =
    name === 'im2col'
      ? [`(param ${image} i32)`, `(param ${rows} i32)`]
      : [`(param ${rows} i32)`, `(param ${image} i32)`];
  return String.raw`${doc}
(func (export "${name}") ${first} (param $b i32) (param $h i32) (param $w i32) (param $c i32)
    (param $kh i32) (param $kw i32) (param $sh i32) (param $sw i32) (param $pt i32) (param $pl i32)
    (param $oh i32) (param $ow i32) ${last}
  (local $n i32) (local $y i32) (local $z i32) (local $i i32) (local $j i32) (local $row i32) (local $col i32)
  (local $seg i32) (local $img i32) (local $at i32)
  (local.set $seg (i32.shl (local.get $c) (i32.const 2)))
  (block $ndone (loop $nloop (br_if $ndone (i32.ge_u (local.get $n) (local.get $b)))
    (local.set $img (i32.add (local.get ${image}) (i32.mul (local.get $n) (i32.mul (i32.mul (local.get $h) (local.get $w)) (local.get $seg)))))
    (local.set $y (i32.const 0))
    (block $ydone (loop $yloop (br_if $ydone (i32.ge_u (local.get $y) (local.get $oh)))
      (local.set $z (i32.const 0))
      (block $zdone (loop $zloop (br_if $zdone (i32.ge_u (local.get $z) (local.get $ow)))
        (local.set $i (i32.const 0))
        (block $idone (loop $iloop (br_if $idone (i32.ge_u (local.get $i) (local.get $kh)))
          (local.set $row (i32.sub (i32.add (i32.mul (local.get $y) (local.get $sh)) (local.get $i)) (local.get $pt)))
          (local.set $j (i32.const 0))
          (block $jdone (loop $jloop (br_if $jdone (i32.ge_u (local.get $j) (local.get $kw)))
            (local.set $col (i32.sub (i32.add (i32.mul (local.get $z) (local.get $sw)) (local.get $j)) (local.get $pl)))
            ;; row and col are unsigned: a negative one is past h or w too
            (if (i32.and (i32.lt_u (local.get $row) (local.get $h)) (i32.lt_u (local.get $col) (local.get $w)))
              (then
                (local.set $at (i32.add (local.get $img) (i32.mul (i32.add (i32.mul (local.get $row) (local.get $w)) (local.get $col)) (local.get $seg))))
                ${inside})${
                  outside
                    ? `
              (else ${outside})`
                    : ''
                })
            (local.set ${rows} (i32.add (local.get ${rows}) (local.get $seg)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $jloop)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $iloop)))
        (local.set $z (i32.add (local.get $z) (i32.const 1)))
        (br $zloop)))
      (local.set $y (i32.add (local.get $y) (i32.const 1)))
      (br $yloop)))
    (local.set $n (i32.add (local.get $n) (i32.const 1)))
    (br $nloop))))`;
}

// The loops around the micro-kernels, by hand. $tmp is MR*8 floats of scratch for the last panel
// when n is not a multiple of 8.
const DRIVER = String.raw`
;; C (m x n) = A (m x k) B, or C += A B when $acc. As BLIS orders it: k-blocks of KC rows of B;
;; within one, blocks of $mc rows of A (about L2_FLOATS of A, read from L2); within one, the
;; panels of B (a KC x 8 panel stays in L1); within one, the micro-kernel down the block's rows.
(func (export "gemm") (param $a i32) (param $lda i32) (param $trans i32) (param $bp i32) (param $c i32) (param $ldc i32)
    (param $m i32) (param $n i32) (param $k i32) (param $acc i32) (param $tmp i32)
  (local $k0 i32) (local $kc i32) (local $load i32) (local $i0 i32) (local $i1 i32) (local $mc i32) (local $i i32)
  (local $rows i32) (local $p i32) (local $full i32) (local $panels i32) (local $aK i32) (local $aI i32) (local $bP i32)
  (local $cP i32) (local $cols i32)
  (local.set $full (i32.shr_u (local.get $n) (i32.const 3)))
  (local.set $panels (i32.shr_u (i32.add (local.get $n) (i32.const 7)) (i32.const 3)))
  (local.set $cols (i32.and (local.get $n) (i32.const 7)))
  (block $kdone (loop $kloop (br_if $kdone (i32.ge_u (local.get $k0) (local.get $k)))
    (local.set $kc (select (i32.const ${KC}) (i32.sub (local.get $k) (local.get $k0))
      (i32.lt_u (i32.const ${KC}) (i32.sub (local.get $k) (local.get $k0)))))
    (local.set $load (i32.or (local.get $acc) (i32.ne (local.get $k0) (i32.const 0))))
    (local.set $aK (if (result i32) (local.get $trans)
      (then (i32.add (local.get $a) (i32.mul (local.get $k0) (local.get $lda))))
      (else (i32.add (local.get $a) (i32.shl (local.get $k0) (i32.const 2))))))
    ;; rows per block: L2_FLOATS / kc, a multiple of MR, at least MR
    (local.set $mc (i32.mul (i32.const ${MR}) (select (i32.const 1) (local.tee $mc (i32.div_u (i32.div_u (i32.const ${L2_FLOATS}) (local.get $kc)) (i32.const ${MR})))
      (i32.eqz (local.get $mc)))))
    (local.set $i0 (i32.const 0))
    (block $i0done (loop $i0loop (br_if $i0done (i32.ge_u (local.get $i0) (local.get $m)))
      (local.set $i1 (select (i32.add (local.get $i0) (local.get $mc)) (local.get $m)
        (i32.lt_u (i32.add (local.get $i0) (local.get $mc)) (local.get $m))))
      (local.set $p (i32.const 0))
      (block $pdone (loop $ploop (br_if $pdone (i32.ge_u (local.get $p) (local.get $panels)))
        (local.set $bP (i32.add (i32.add (local.get $bp) (i32.mul (local.get $p) (i32.shl (local.get $k) (i32.const 5))))
          (i32.shl (local.get $k0) (i32.const 5))))
        (local.set $i (local.get $i0))
        (block $idone (loop $iloop (br_if $idone (i32.ge_u (local.get $i) (local.get $i1)))
          (local.set $rows (select (i32.const ${MR}) (i32.sub (local.get $i1) (local.get $i))
            (i32.lt_u (i32.const ${MR}) (i32.sub (local.get $i1) (local.get $i)))))
          (local.set $aI (i32.add (local.get $aK) (if (result i32) (local.get $trans)
            (then (i32.shl (local.get $i) (i32.const 2)))
            (else (i32.mul (local.get $i) (local.get $lda))))))
          (local.set $cP (i32.add (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $p) (i32.const 5))))
          (if (i32.lt_u (local.get $p) (local.get $full))
            (then (call $micro (local.get $rows) (local.get $trans) (local.get $aI) (local.get $lda) (local.get $bP)
              (local.get $cP) (local.get $ldc) (local.get $kc) (local.get $load)))
            ;; the last panel, past n: through $tmp, so columns past n are never written
            (else
              (if (local.get $load) (then (call $copyTile (local.get $cP) (local.get $ldc) (local.get $tmp) (i32.const 32)
                (local.get $rows) (local.get $cols))))
              (call $micro (local.get $rows) (local.get $trans) (local.get $aI) (local.get $lda) (local.get $bP)
                (local.get $tmp) (i32.const 32) (local.get $kc) (local.get $load))
              (call $copyTile (local.get $tmp) (i32.const 32) (local.get $cP) (local.get $ldc) (local.get $rows) (local.get $cols))))
          (local.set $i (i32.add (local.get $i) (i32.const ${MR})))
          (br $iloop)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $ploop)))
      (local.set $i0 (local.get $i1))
      (br $i0loop)))
    (local.set $k0 (i32.add (local.get $k0) (i32.const ${KC})))
    (br $kloop))))

;; rows x cols floats from one strided tile to another.
(func $copyTile (param $src i32) (param $ls i32) (param $dst i32) (param $ld i32) (param $rows i32) (param $cols i32)
  (block $done (loop $next (br_if $done (i32.eqz (local.get $rows)))
    (memory.copy (local.get $dst) (local.get $src) (i32.shl (local.get $cols) (i32.const 2)))
    (local.set $src (i32.add (local.get $src) (local.get $ls)))
    (local.set $dst (i32.add (local.get $dst) (local.get $ld)))
    (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
    (br $next))))

;; Packs B (k x n, element (kk, j) at src + kk*rs + j*cs) into 8-column panels, zeros past n.
(func (export "packB") (param $src i32) (param $rs i32) (param $cs i32) (param $k i32) (param $n i32) (param $dst i32)
  (local $p i32) (local $kk i32) (local $j i32) (local $cols i32) (local $row i32) (local $out i32)
  (local.set $out (local.get $dst))
  (block $pdone (loop $ploop (br_if $pdone (i32.ge_u (i32.shl (local.get $p) (i32.const 3)) (local.get $n)))
    (local.set $cols (i32.sub (local.get $n) (i32.shl (local.get $p) (i32.const 3))))
    (local.set $row (i32.add (local.get $src) (i32.mul (i32.shl (local.get $p) (i32.const 3)) (local.get $cs))))
    (local.set $kk (i32.const 0))
    (block $kdone (loop $kloop (br_if $kdone (i32.ge_u (local.get $kk) (local.get $k)))
      (if (i32.and (i32.eq (local.get $cs) (i32.const 4)) (i32.ge_u (local.get $cols) (i32.const 8)))
        (then
          (v128.store (local.get $out) (v128.load (local.get $row)))
          (v128.store offset=16 (local.get $out) (v128.load offset=16 (local.get $row))))
        (else
          (local.set $j (i32.const 0))
          (block $jdone (loop $jloop (br_if $jdone (i32.ge_u (local.get $j) (i32.const 8)))
            (f32.store (i32.add (local.get $out) (i32.shl (local.get $j) (i32.const 2)))
              (if (result f32) (i32.lt_u (local.get $j) (local.get $cols))
                (then (f32.load (i32.add (local.get $row) (i32.mul (local.get $j) (local.get $cs)))))
                (else (f32.const 0))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $jloop)))))
      (local.set $out (i32.add (local.get $out) (i32.const 32)))
      (local.set $row (i32.add (local.get $row) (local.get $rs)))
      (local.set $kk (i32.add (local.get $kk) (i32.const 1)))
      (br $kloop)))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (br $ploop))))

${windowWalk(
  'im2col',
  '$dst',
  `;; im2col of an NHWC image x [b, h, w, c] for a kh x kw kernel at strides sh, sw, padding pt, pl:
;; dst [b*oh*ow, kh*kw*c], zeros where the window leaves the image.`,
  '(memory.copy (local.get $dst) (local.get $at) (local.get $seg))',
  '(memory.fill (local.get $dst) (i32.const 0) (local.get $seg))',
)}

${windowWalk(
  'col2im',
  '$cols',
  ';; The adjoint of im2col: dx [b, h, w, c] += every in-image segment of cols [b*oh*ow, kh*kw*c].',
  '(call $addTo (local.get $at) (local.get $cols) (local.get $c))',
  '',
)}

;; dst[0..len) += src[0..len), four floats at a time, then one.
(func $addTo (param $dst i32) (param $src i32) (param $len i32)
  (local $end i32)
  (local.set $end (i32.add (local.get $dst) (i32.shl (i32.and (local.get $len) (i32.const -4)) (i32.const 2))))
  (block $vdone (loop $vloop (br_if $vdone (i32.ge_u (local.get $dst) (local.get $end)))
    (v128.store (local.get $dst) (f32x4.add (v128.load (local.get $dst)) (v128.load (local.get $src))))
    (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
    (local.set $src (i32.add (local.get $src) (i32.const 16)))
    (br $vloop)))
  (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $len) (i32.const 3)) (i32.const 2))))
  (block $sdone (loop $sloop (br_if $sdone (i32.ge_u (local.get $dst) (local.get $end)))
    (f32.store (local.get $dst) (f32.add (f32.load (local.get $dst)) (f32.load (local.get $src))))
    (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
    (local.set $src (i32.add (local.get $src) (i32.const 4)))
    (br $sloop))))

;; ---- per-channel loops over NHWC activations: rows = N*H*W, c channels, fused where tfjs would
;; ---- transpose to reduce over N, H, W or make a mask and a select.

;; out[ch] = sum over rows of x[row, ch], rows in order (as tfjs's Sum, after its transpose).
(func $channelSum (export "channelSum") (param $x i32) (param $rows i32) (param $c i32) (param $out i32)
  (memory.fill (local.get $out) (i32.const 0) (i32.shl (local.get $c) (i32.const 2)))
  (block $done (loop $next (br_if $done (i32.eqz (local.get $rows)))
    (call $addTo (local.get $out) (local.get $x) (local.get $c))
    (local.set $x (i32.add (local.get $x) (i32.shl (local.get $c) (i32.const 2))))
    (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
    (br $next))))

;; BatchNorm's parameter gradients in one pass: sumG[ch] = sum g, sumGX[ch] = sum g * xhat, with
;; xhat = (x - mean[ch]) * rstd[ch].
(func (export "bnParamGrads") (param $g i32) (param $x i32) (param $mean i32) (param $rstd i32) (param $rows i32) (param $c i32)
    (param $sumG i32) (param $sumGX i32)
  (local $ch i32) (local $gv v128) (local $xhat v128) (local $o i32) (local $end i32)
  (memory.fill (local.get $sumG) (i32.const 0) (i32.shl (local.get $c) (i32.const 2)))
  (memory.fill (local.get $sumGX) (i32.const 0) (i32.shl (local.get $c) (i32.const 2)))
  (local.set $end (i32.shl (local.get $c) (i32.const 2)))
  (block $done (loop $next (br_if $done (i32.eqz (local.get $rows)))
    (local.set $o (i32.const 0))
    (block $cdone (loop $cloop (br_if $cdone (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
      (local.set $xhat (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $o))) (v128.load (i32.add (local.get $mean) (local.get $o))))
        (v128.load (i32.add (local.get $rstd) (local.get $o)))))
      (v128.store (i32.add (local.get $sumG) (local.get $o)) (f32x4.add (v128.load (i32.add (local.get $sumG) (local.get $o))) (local.get $gv)))
      (v128.store (i32.add (local.get $sumGX) (local.get $o))
        (f32x4.add (v128.load (i32.add (local.get $sumGX) (local.get $o))) (f32x4.mul (local.get $gv) (local.get $xhat))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $cloop)))
    (local.set $g (i32.add (local.get $g) (local.get $end)))
    (local.set $x (i32.add (local.get $x) (local.get $end)))
    (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
    (br $next))))

;; BatchNorm's input gradient: dx = (g - k1[ch] - (x - mean[ch]) * rstd[ch] * k2[ch]) * k3[ch], with
;; k1 = mean of g, k2 = mean of g * xhat, k3 = scale * rstd (c a multiple of 4).
(func (export "bnInputGrad") (param $g i32) (param $x i32) (param $mean i32) (param $rstd i32) (param $k1 i32) (param $k2 i32)
    (param $k3 i32) (param $rows i32) (param $c i32) (param $dx i32)
  (local $o i32) (local $end i32) (local $xhat v128)
  (local.set $end (i32.shl (local.get $c) (i32.const 2)))
  (block $done (loop $next (br_if $done (i32.eqz (local.get $rows)))
    (local.set $o (i32.const 0))
    (block $cdone (loop $cloop (br_if $cdone (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $xhat (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $o))) (v128.load (i32.add (local.get $mean) (local.get $o))))
        (v128.load (i32.add (local.get $rstd) (local.get $o)))))
      (v128.store (i32.add (local.get $dx) (local.get $o))
        (f32x4.mul
          (f32x4.sub (f32x4.sub (v128.load (i32.add (local.get $g) (local.get $o))) (v128.load (i32.add (local.get $k1) (local.get $o))))
            (f32x4.mul (local.get $xhat) (v128.load (i32.add (local.get $k2) (local.get $o)))))
          (v128.load (i32.add (local.get $k3) (local.get $o)))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $cloop)))
    (local.set $g (i32.add (local.get $g) (local.get $end)))
    (local.set $x (i32.add (local.get $x) (local.get $end)))
    (local.set $dx (i32.add (local.get $dx) (local.get $end)))
    (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
    (br $next))))

;; Batch statistics per channel, as tf.moments over N, H, W: mean = sum x / rows, then
;; variance = sum (x - mean)^2 / rows (c a multiple of 4).
(func (export "channelMoments") (param $x i32) (param $rows i32) (param $c i32) (param $mean i32) (param $variance i32)
  (local $o i32) (local $end i32) (local $r i32) (local $p i32) (local $n v128) (local $d v128)
  (call $channelSum (local.get $x) (local.get $rows) (local.get $c) (local.get $mean))
  (memory.fill (local.get $variance) (i32.const 0) (i32.shl (local.get $c) (i32.const 2)))
  (local.set $end (i32.shl (local.get $c) (i32.const 2)))
  (local.set $n (f32x4.splat (f32.convert_i32_u (local.get $rows))))
  (call $divide (local.get $mean) (local.get $end) (local.get $n))
  (local.set $p (local.get $x))
  (local.set $r (local.get $rows))
  (block $done (loop $next (br_if $done (i32.eqz (local.get $r)))
    (local.set $o (i32.const 0))
    (block $cdone (loop $cloop (br_if $cdone (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $d (f32x4.sub (v128.load (i32.add (local.get $p) (local.get $o))) (v128.load (i32.add (local.get $mean) (local.get $o)))))
      (v128.store (i32.add (local.get $variance) (local.get $o))
        (f32x4.add (v128.load (i32.add (local.get $variance) (local.get $o))) (f32x4.mul (local.get $d) (local.get $d))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $cloop)))
    (local.set $p (i32.add (local.get $p) (local.get $end)))
    (local.set $r (i32.sub (local.get $r) (i32.const 1)))
    (br $next)))
  (call $divide (local.get $variance) (local.get $end) (local.get $n)))

;; p[0..bytes) /= n, four floats at a time (bytes a multiple of 16).
(func $divide (param $p i32) (param $bytes i32) (param $n v128)
  (local $end i32)
  (local.set $end (i32.add (local.get $p) (local.get $bytes)))
  (block $done (loop $next (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
    (v128.store (local.get $p) (f32x4.div (v128.load (local.get $p)) (local.get $n)))
    (local.set $p (i32.add (local.get $p) (i32.const 16)))
    (br $next))))

;; Leaky ReLU's input gradient: out = x > 0 ? g : g * alpha, n floats (a multiple of 4); with g = x,
;; leaky ReLU itself.
(func (export "leakyReluGrad") (param $g i32) (param $x i32) (param $alpha f32) (param $n i32) (param $out i32)
  (local $end i32) (local $gv v128) (local $a v128)
  (local.set $a (f32x4.splat (local.get $alpha)))
  (local.set $end (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2))))
  (block $done (loop $next (br_if $done (i32.ge_u (local.get $out) (local.get $end)))
    (local.set $gv (v128.load (local.get $g)))
    (v128.store (local.get $out) (v128.bitselect (local.get $gv) (f32x4.mul (local.get $gv) (local.get $a))
      (f32x4.gt (v128.load (local.get $x)) (f32x4.splat (f32.const 0)))))
    (local.set $g (i32.add (local.get $g) (i32.const 16)))
    (local.set $x (i32.add (local.get $x) (i32.const 16)))
    (local.set $out (i32.add (local.get $out) (i32.const 16)))
    (br $next))))
`;

/** The module's text: imports the tfjs wasm heap as its memory. */
export function gemmWat(fma: boolean): string {
  const kernels: string[] = [];
  for (const trans of [false, true]) for (let r = 1; r <= MR; r++) kernels.push(kernel(r, trans, fma));
  return [
    `;; Generated by scripts/gemm-wat.ts (${fma ? 'relaxed-SIMD fused multiply-add' : 'f32x4 mul + add'}): do not edit; run \`npm run build:wasm\`.`,
    '(module',
    '(import "env" "memory" (memory 1))',
    ...kernels,
    dispatch(),
    DRIVER,
    ')',
    '',
  ].join('\n');
}
