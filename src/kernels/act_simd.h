/*
 * act_simd.h — the activation kernels written once over a small vector
 * vocabulary (V = __m512 or __m256), included by act_avx512.c and act_avx2.c
 * after they define the V* macros. exp is Cody–Waite range reduction
 * (x = k ln2 + r, |r| <= ln2/2) and the degree-6 Taylor polynomial of e^r
 * (truncation error < 2e-7 relative), then scaling by 2^k. Inputs are
 * clamped to [-87, 88] so 2^k stays a normal float; the sigmoid is
 * 1 / (1 + e^-x) and GELU's tanh is rewritten through it (below). Tails go through
 * the scalar reference.
 */

static inline V vexp(V x) {
    x = VMIN(VMAX(x, VSET(-87.0f)), VSET(88.0f));
    V k = VROUND(VMUL(x, VSET(1.44269504088896341f)));
    V r = VFNMADD(k, VSET(0.693145751953125f), x);       /* ln2 high part */
    r = VFNMADD(k, VSET(1.428606765330187e-06f), r);     /* ln2 low part */
    V p = VSET(1.0f / 720.0f);
    p = VFMADD(p, r, VSET(1.0f / 120.0f));
    p = VFMADD(p, r, VSET(1.0f / 24.0f));
    p = VFMADD(p, r, VSET(1.0f / 6.0f));
    p = VFMADD(p, r, VSET(0.5f));
    p = VFMADD(p, r, VSET(1.0f));
    p = VFMADD(p, r, VSET(1.0f));
    return VSCALE(p, k);
}

static inline V vsigmoid(V x) {
    return VDIV(VSET(1.0f), VADD(VSET(1.0f), vexp(VSUB(VSET(0.0f), x))));
}

/* gelu_tanh(x) = 0.5 x (1 + tanh u) = x s with s = sigmoid(2u), and
 * 1 - tanh^2 u = 4 s (1 - s): with e = exp(-2u), s = 1/(1+e) and
 * 1 - s = e s are both accurate to a few ulp where tanh would cancel. */
static inline void gelu_parts(V v, V *s, V *oms, V *du) {
    V v2 = VMUL(v, v);
    V u = VMUL(VSET(DUET_GELU_SQRT_2_OVER_PI), VFMADD(VMUL(v2, v), VSET(DUET_GELU_CUBIC), v));
    V e = vexp(VMUL(VSET(-2.0f), u));
    *s = VDIV(VSET(1.0f), VADD(VSET(1.0f), e));
    *oms = VMUL(e, *s);
    if (du) *du = VMUL(VSET(DUET_GELU_SQRT_2_OVER_PI), VFMADD(v2, VSET(3.0f * DUET_GELU_CUBIC), VSET(1.0f)));
}

static void gelu_tanh_fwd_v(float *out, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        V v = VLOAD(x + i), s, oms;
        gelu_parts(v, &s, &oms, NULL);
        VSTORE(out + i, VMUL(v, s));
    }
    duet_act_scalar.gelu_tanh_fwd(out + i, x + i, n - i);
}

static void gelu_tanh_bwd_v(float *dinp, const float *dout, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        V v = VLOAD(x + i), s, oms, du;
        gelu_parts(v, &s, &oms, &du);
        /* d = s + 2 x s (1 - s) du */
        V d = VFMADD(VMUL(VMUL(VSET(2.0f), v), VMUL(s, oms)), du, s);
        VSTORE(dinp + i, VFMADD(VLOAD(dout + i), d, VLOAD(dinp + i)));
    }
    duet_act_scalar.gelu_tanh_bwd(dinp + i, dout + i, x + i, n - i);
}

static void silu_fwd_v(float *out, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        V v = VLOAD(x + i);
        VSTORE(out + i, VMUL(v, vsigmoid(v)));
    }
    duet_act_scalar.silu_fwd(out + i, x + i, n - i);
}

static void silu_bwd_v(float *dinp, const float *dout, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        V v = VLOAD(x + i), s = vsigmoid(v);
        V d = VMUL(s, VFMADD(v, VSUB(VSET(1.0f), s), VSET(1.0f)));
        VSTORE(dinp + i, VFMADD(VLOAD(dout + i), d, VLOAD(dinp + i)));
    }
    duet_act_scalar.silu_bwd(dinp + i, dout + i, x + i, n - i);
}

static void swiglu_fwd_v(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        V g = VLOAD(gate + i);
        VSTORE(out + i, VMUL(VMUL(g, vsigmoid(g)), VLOAD(up + i)));
    }
    duet_act_scalar.swiglu_fwd(out + i, gate + i, up + i, n - i);
}

static void swiglu_bwd_v(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        V g = VLOAD(gate + i), s = vsigmoid(g), d = VLOAD(dout + i);
        if (dgate) {
            V dg = VMUL(VMUL(d, VLOAD(up + i)), VMUL(s, VFMADD(g, VSUB(VSET(1.0f), s), VSET(1.0f))));
            VSTORE(dgate + i, VADD(VLOAD(dgate + i), dg));
        }
        if (dup) VSTORE(dup + i, VFMADD(d, VMUL(g, s), VLOAD(dup + i)));
    }
    duet_act_scalar.swiglu_bwd(dgate ? dgate + i : NULL, dup ? dup + i : NULL, dout + i, gate + i,
                               up + i, n - i);
}
