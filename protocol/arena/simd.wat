;; The coordinator's hot loops, in 128-bit WebAssembly SIMD, on a shared memory that holds its
;; optimizer state and shared-memory receive buffers (protocol/arena/simd.ts): the finiteness check
;; of received gradients, their weighted add into the sums, and Adam. `npm run build:wasm` compiles this file into protocol/arena/simd-wasm.ts;
;; test/protocol/simd.test.ts fails when the two differ.
;;
;; Each kernel takes byte addresses and a count of whole vectors; simd.ts runs the few leftover
;; elements in JavaScript. Unaligned addresses are allowed (v128.load takes any address).
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; 1 when f32[p, p + 16 n16) holds a NaN or an infinity (all exponent bits set), else 0.
  ;; Integer compares on the bits, 16 floats a turn into two accumulators.
  (func (export "nonFinite") (param $p i32) (param $n16 i32) (result i32)
    (local $end i32) (local $a v128) (local $b v128) (local $exp v128)
    (local.set $exp (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n16) (i32.const 6))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $a (v128.or (local.get $a) (v128.or
          (i32x4.eq (v128.and (v128.load (local.get $p)) (local.get $exp)) (local.get $exp))
          (i32x4.eq (v128.and (v128.load offset=16 (local.get $p)) (local.get $exp)) (local.get $exp)))))
        (local.set $b (v128.or (local.get $b) (v128.or
          (i32x4.eq (v128.and (v128.load offset=32 (local.get $p)) (local.get $exp)) (local.get $exp))
          (i32x4.eq (v128.and (v128.load offset=48 (local.get $p)) (local.get $exp)) (local.get $exp)))))
        (local.set $p (i32.add (local.get $p) (i32.const 64)))
        (br $next)))
    (v128.any_true (v128.or (local.get $a) (local.get $b))))

  ;; sum[i] = f32(f64(sum[i]) + n * f64(g[i])) over 4 n4 floats, or with $first set
  ;; sum[i] = f32(0 + n * f64(g[i])): per element the float64 operations, in order, of reduce.ts's
  ;; JavaScript loop (promote, multiply, add, round once to float32), so the floats are bitwise
  ;; the same. The select reads 0 in place of the sum for the first shard; 4 floats a turn (a
  ;; helper function per half measured 1.8x slower: V8 does not inline wasm calls).
  (func (export "addScaled") (param $sum i32) (param $g i32) (param $n f64) (param $n4 i32) (param $first i32)
    (local $end i32) (local $nn v128) (local $x v128) (local $s v128)
    (local.set $nn (f64x2.splat (local.get $n)))
    (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n4) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
        (local.set $x (v128.load (local.get $g)))
        (local.set $s (select (result v128) (v128.const i32x4 0 0 0 0) (v128.load (local.get $sum)) (local.get $first)))
        (v128.store (local.get $sum)
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero
              (f64x2.add (f64x2.promote_low_f32x4 (local.get $s))
                (f64x2.mul (local.get $nn) (f64x2.promote_low_f32x4 (local.get $x)))))
            (f32x4.demote_f64x2_zero
              (f64x2.add
                (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $s) (local.get $s)))
                (f64x2.mul (local.get $nn)
                  (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))))
        (local.set $g (i32.add (local.get $g) (i32.const 16)))
        (local.set $sum (i32.add (local.get $sum) (i32.const 16)))
        (br $next))))

  ;; 2 shards' n * g onto sum in one pass, as 2 addScaled calls in order would: after each
  ;; add the lane is rounded to float32 (demote, promote), as the store between calls rounds it.
  (func (export "addScaled2") (param $sum i32) (param $g0 i32) (param $n0 f64) (param $g1 i32) (param $n1 f64) (param $n4 i32) (param $first i32)
    (local $end i32) (local $x v128) (local $s v128) (local $lo v128) (local $hi v128) (local $N0 v128) (local $N1 v128)
    (local.set $N0 (f64x2.splat (local.get $n0)))
    (local.set $N1 (f64x2.splat (local.get $n1)))
    (local.set $end (i32.add (local.get $sum) (i32.shl (local.get $n4) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $sum) (local.get $end)))
        (local.set $s (select (result v128) (v128.const i32x4 0 0 0 0) (v128.load (local.get $sum)) (local.get $first)))
        (local.set $lo (f64x2.promote_low_f32x4 (local.get $s)))
        (local.set $hi (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $s) (local.get $s))))
        (local.set $x (v128.load (local.get $g0)))
        (local.set $lo (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add (local.get $lo) (f64x2.mul (local.get $N0) (f64x2.promote_low_f32x4 (local.get $x)))))))
        (local.set $hi (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add (local.get $hi) (f64x2.mul (local.get $N0) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))))
        (local.set $g0 (i32.add (local.get $g0) (i32.const 16)))
        (local.set $x (v128.load (local.get $g1)))
        (local.set $lo (f64x2.add (local.get $lo) (f64x2.mul (local.get $N1) (f64x2.promote_low_f32x4 (local.get $x)))))
        (local.set $hi (f64x2.add (local.get $hi) (f64x2.mul (local.get $N1) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))
        (local.set $g1 (i32.add (local.get $g1) (i32.const 16)))
        (v128.store (local.get $sum)
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (local.get $lo)) (f32x4.demote_f64x2_zero (local.get $hi))))
        (local.set $sum (i32.add (local.get $sum) (i32.const 16)))
        (br $next))))

  ;; 4 shards' n * g onto sum in one pass, as 4 addScaled calls in order would: after each
  ;; add the lane is rounded to float32 (demote, promote), as the store between calls rounds it.
  (func (export "addScaled4") (param $sum i32) (param $g0 i32) (param $n0 f64) (param $g1 i32) (param $n1 f64) (param $g2 i32) (param $n2 f64) (param $g3 i32) (param $n3 f64) (param $n4 i32) (param $first i32)
    (local $end i32) (local $x v128) (local $s v128) (local $lo v128) (local $hi v128) (local $N0 v128) (local $N1 v128) (local $N2 v128) (local $N3 v128)
    (local.set $N0 (f64x2.splat (local.get $n0)))
    (local.set $N1 (f64x2.splat (local.get $n1)))
    (local.set $N2 (f64x2.splat (local.get $n2)))
    (local.set $N3 (f64x2.splat (local.get $n3)))
    (local.set $end (i32.add (local.get $sum) (i32.shl (local.get $n4) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $sum) (local.get $end)))
        (local.set $s (select (result v128) (v128.const i32x4 0 0 0 0) (v128.load (local.get $sum)) (local.get $first)))
        (local.set $lo (f64x2.promote_low_f32x4 (local.get $s)))
        (local.set $hi (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $s) (local.get $s))))
        (local.set $x (v128.load (local.get $g0)))
        (local.set $lo (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add (local.get $lo) (f64x2.mul (local.get $N0) (f64x2.promote_low_f32x4 (local.get $x)))))))
        (local.set $hi (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add (local.get $hi) (f64x2.mul (local.get $N0) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))))
        (local.set $g0 (i32.add (local.get $g0) (i32.const 16)))
        (local.set $x (v128.load (local.get $g1)))
        (local.set $lo (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add (local.get $lo) (f64x2.mul (local.get $N1) (f64x2.promote_low_f32x4 (local.get $x)))))))
        (local.set $hi (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add (local.get $hi) (f64x2.mul (local.get $N1) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))))
        (local.set $g1 (i32.add (local.get $g1) (i32.const 16)))
        (local.set $x (v128.load (local.get $g2)))
        (local.set $lo (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add (local.get $lo) (f64x2.mul (local.get $N2) (f64x2.promote_low_f32x4 (local.get $x)))))))
        (local.set $hi (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.add (local.get $hi) (f64x2.mul (local.get $N2) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))))
        (local.set $g2 (i32.add (local.get $g2) (i32.const 16)))
        (local.set $x (v128.load (local.get $g3)))
        (local.set $lo (f64x2.add (local.get $lo) (f64x2.mul (local.get $N3) (f64x2.promote_low_f32x4 (local.get $x)))))
        (local.set $hi (f64x2.add (local.get $hi) (f64x2.mul (local.get $N3) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))
        (local.set $g3 (i32.add (local.get $g3) (i32.const 16)))
        (v128.store (local.get $sum)
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (local.get $lo)) (f32x4.demote_f64x2_zero (local.get $hi))))
        (local.set $sum (i32.add (local.get $sum) (i32.const 16)))
        (br $next))))

  ;; The mean gradient and Adam over 4 n4 floats, every operation in float32 (as MATLAB's
  ;; adamupdate on single-precision dlarrays), in the order of adam.ts's JavaScript loop:
  ;;   g = s inv;  m = b1 m + a1 g;  v = b2 v + a2 (g g);  w = w - lrt (m / (sqrt(v) + eps))
  ;; where a1 = 1 - b1, a2 = 1 - b2 and lrt = lr sqrt(1 - b2^t) / (1 - b1^t): MATLAB's bias
  ;; correction folded into the learning rate, one scalar per step worked out by the caller, so
  ;; the loop does no power and one division per lane.
  (func (export "adam") (param $w i32) (param $s i32) (param $m i32) (param $v i32) (param $n4 i32)
      (param $inv f32) (param $b1 f32) (param $b2 f32) (param $a1 f32) (param $a2 f32)
      (param $lrt f32) (param $eps f32)
    (local $end i32) (local $g v128) (local $mi v128) (local $vi v128)
    (local $Inv v128) (local $B1 v128) (local $B2 v128) (local $A1 v128) (local $A2 v128)
    (local $Lrt v128) (local $Eps v128)
    (local.set $Inv (f32x4.splat (local.get $inv)))
    (local.set $B1 (f32x4.splat (local.get $b1)))
    (local.set $B2 (f32x4.splat (local.get $b2)))
    (local.set $A1 (f32x4.splat (local.get $a1)))
    (local.set $A2 (f32x4.splat (local.get $a2)))
    (local.set $Lrt (f32x4.splat (local.get $lrt)))
    (local.set $Eps (f32x4.splat (local.get $eps)))
    (local.set $end (i32.add (local.get $w) (i32.shl (local.get $n4) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $g (f32x4.mul (v128.load (local.get $s)) (local.get $Inv)))
        (local.set $mi (f32x4.add (f32x4.mul (local.get $B1) (v128.load (local.get $m)))
                                  (f32x4.mul (local.get $A1) (local.get $g))))
        (local.set $vi (f32x4.add (f32x4.mul (local.get $B2) (v128.load (local.get $v)))
                                  (f32x4.mul (local.get $A2) (f32x4.mul (local.get $g) (local.get $g)))))
        (v128.store (local.get $m) (local.get $mi))
        (v128.store (local.get $v) (local.get $vi))
        (v128.store (local.get $w)
          (f32x4.sub (v128.load (local.get $w))
            (f32x4.mul (local.get $Lrt)
              (f32x4.div (local.get $mi) (f32x4.add (f32x4.sqrt (local.get $vi)) (local.get $Eps))))))
        (local.set $w (i32.add (local.get $w) (i32.const 16)))
        (local.set $s (i32.add (local.get $s) (i32.const 16)))
        (local.set $m (i32.add (local.get $m) (i32.const 16)))
        (local.set $v (i32.add (local.get $v) (i32.const 16)))
        (br $next))))

  ;; A node's weighted mean of its workers' gradients (node/combine.ts weightedMean): over 4 n4
  ;; floats, out = (n_0 g_0 + n_1 g_1 + ... + n_(k-1) g_(k-1)) / total, summed in float64 in that
  ;; order and rounded to float32 once. $table holds k entries of 16 bytes: the i32 address of
  ;; g_j, 4 bytes unused, the f64 weight n_j.
  (func (export "weightedMean") (param $out i32) (param $table i32) (param $k i32) (param $total f64) (param $n4 i32)
    (local $off i32) (local $end i32) (local $e i32) (local $tend i32) (local $x v128) (local $lo v128) (local $hi v128) (local $T v128) (local $N v128)
    (local.set $T (f64x2.splat (local.get $total)))
    (local.set $end (i32.shl (local.get $n4) (i32.const 4)))
    (local.set $tend (i32.add (local.get $table) (i32.shl (local.get $k) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $off) (local.get $end)))
        ;; The first term as it is (no 0 + before it: a -0 stays -0, as in the JavaScript loop).
        (local.set $N (f64x2.splat (f64.load offset=8 (local.get $table))))
        (local.set $x (v128.load (i32.add (i32.load (local.get $table)) (local.get $off))))
        (local.set $lo (f64x2.mul (local.get $N) (f64x2.promote_low_f32x4 (local.get $x))))
        (local.set $hi (f64x2.mul (local.get $N) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x)))))
        (local.set $e (i32.add (local.get $table) (i32.const 16)))
        (block $terms
          (loop $term
            (br_if $terms (i32.ge_u (local.get $e) (local.get $tend)))
            (local.set $N (f64x2.splat (f64.load offset=8 (local.get $e))))
            (local.set $x (v128.load (i32.add (i32.load (local.get $e)) (local.get $off))))
            (local.set $lo (f64x2.add (local.get $lo) (f64x2.mul (local.get $N) (f64x2.promote_low_f32x4 (local.get $x)))))
            (local.set $hi (f64x2.add (local.get $hi) (f64x2.mul (local.get $N) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))))
            (local.set $e (i32.add (local.get $e) (i32.const 16)))
            (br $term)))
        (v128.store (i32.add (local.get $out) (local.get $off))
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (f64x2.div (local.get $lo) (local.get $T)))
            (f32x4.demote_f64x2_zero (f64x2.div (local.get $hi) (local.get $T)))))
        (local.set $off (i32.add (local.get $off) (i32.const 16)))
        (br $next))))
)
