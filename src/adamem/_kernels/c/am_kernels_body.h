/*
 * The kernels of one dtype. am_kernels.c includes this file twice: with T = float,
 * SUFFIX = f32, SQRT = sqrtf, POW = powf, and with T = double, SUFFIX = f64, SQRT = sqrt,
 * POW = pow. Comments name the reference function (amsgd.py, amadamw.py) whose operations
 * each loop repeats.
 */

static T NAME(load)(int64_t address) { return *(const T *)pointer(address); }

static void NAME(store)(int64_t address, T value) { *(T *)pointer(address) = value; }

/* torch.lerp(start, end, weight), with ATen's formula: exact at both ends. */
ALWAYS_INLINE T NAME(lerp)(T start, T end, T weight)
{
    return weight < (T)0.5 ? start + weight * (end - start)
                           : end - (end - start) * ((T)1 - weight);
}

/*
 * amadamw.pull_weight: the pull's weight that the model takes in place of lambd * P. It is
 * lambd * P, or lambd itself for the scale-invariant pull (measured in the metric P), and 0
 * when lambd is 0 even where P overflowed to inf (the model then has no pull term at all;
 * 0 * inf would turn the step into NaN).
 */
ALWAYS_INLINE T NAME(pull_weight)(T lambd, T p, int scale_invariant)
{
    return scale_invariant ? lambd : lambd != 0 ? lambd * p : (T)0;
}

/* ---------------------------------------------------------------------------- AM-SGD */

/*
 * The gradient the algorithm sees: the stored one times sign (-1 for maximize, exact), plus
 * weight_decay * x for AM-SGD's coupled L2 (ParamBatch.compute_grads, AMSGD's torch step).
 */
ALWAYS_INLINE T NAME(sgd_grad)(const T *g, const T *x, int64_t i, T sign, T weight_decay,
                               int decay)
{
    return decay ? sign * g[i] + weight_decay * x[i] : sign * g[i];
}

/* amsgd_block_sums: <g, d>, <d - g, g + lambd d>, <d - g, d - g>. */
ALWAYS_INLINE void NAME(sgd_sums_body)(const int64_t *record, const double *hyper, int64_t start,
                                       int64_t stop, double *sums, int decay)
{
    const T *restrict x = pointer(record[R_X]);
    const T *restrict g = pointer(record[R_G]);
    const T *restrict d = pointer(record[R_D]);
    const T lambd = (T)hyper[H_LAMBD], weight_decay = (T)hyper[H_WEIGHT_DECAY];
    const T sign = (T)hyper[H_GRAD_SIGN];
    for (int64_t block = start; block < stop; block += BLOCK) {
        const int64_t end = block + BLOCK < stop ? block + BLOCK : stop;
        T memory_dot = 0, pull = 0, curvature = 0;
#pragma omp simd reduction(+ : memory_dot, pull, curvature)
        for (int64_t i = block; i < end; ++i) {
            const T grad = NAME(sgd_grad)(g, x, i, sign, weight_decay, decay);
            const T difference = d[i] - grad;
            memory_dot += grad * d[i];
            pull += difference * (grad + lambd * d[i]);
            curvature += difference * difference;
        }
        sums[0] += memory_dot;
        sums[1] += pull;
        sums[2] += curvature;
    }
}

static void NAME(sgd_sums_chunk)(const int64_t *record, const double *hyper,
                                 const double *constants, int64_t start, int64_t stop,
                                 double *sums)
{
    (void)constants;
    if (hyper[H_WEIGHT_DECAY] != 0.0)
        NAME(sgd_sums_body)(record, hyper, start, stop, sums, 1);
    else
        NAME(sgd_sums_body)(record, hyper, start, stop, sums, 0);
}

/*
 * amsgd_tensor_step: d <- lerp(d, g, w), w = (1 - beta) / (1 + lambd); x <- x - lr d, or with
 * Nesterov x <- x - lr lerp(d, g, w).
 */
ALWAYS_INLINE void NAME(sgd_update_body)(const int64_t *record, const double *hyper,
                                         const double *constants, int64_t start, int64_t stop,
                                         int decay, int nesterov)
{
    T *restrict x = pointer(record[R_X]);
    const T *restrict g = pointer(record[R_G]);
    T *restrict d = pointer(record[R_D]);
    const T lr = (T)hyper[H_LR], weight_decay = (T)hyper[H_WEIGHT_DECAY];
    const T sign = (T)hyper[H_GRAD_SIGN];
    const T weight = (T)constants[K_ONE_MINUS_BETA];
#pragma omp simd
    for (int64_t i = start; i < stop; ++i) {
        const T grad = NAME(sgd_grad)(g, x, i, sign, weight_decay, decay);
        const T memory = NAME(lerp)(d[i], grad, weight);
        d[i] = memory;
        x[i] = x[i] - lr * (nesterov ? NAME(lerp)(memory, grad, weight) : memory);
    }
}

static void NAME(sgd_update_chunk)(const int64_t *record, const double *hyper,
                                   const double *constants, int64_t start, int64_t stop,
                                   double *sums)
{
    (void)sums;
    const int decay = hyper[H_WEIGHT_DECAY] != 0.0, nesterov = hyper[H_NESTEROV] != 0.0;
    if (decay && nesterov)
        NAME(sgd_update_body)(record, hyper, constants, start, stop, 1, 1);
    else if (decay)
        NAME(sgd_update_body)(record, hyper, constants, start, stop, 1, 0);
    else if (nesterov)
        NAME(sgd_update_body)(record, hyper, constants, start, stop, 0, 1);
    else
        NAME(sgd_update_body)(record, hyper, constants, start, stop, 0, 0);
}

/* amsgd_update's first step: d <- g; x <- x - lr g. */
static void NAME(sgd_first_chunk)(const int64_t *record, const double *hyper,
                                  const double *constants, int64_t start, int64_t stop,
                                  double *sums)
{
    (void)constants;
    (void)sums;
    T *restrict x = pointer(record[R_X]);
    const T *restrict g = pointer(record[R_G]);
    T *restrict d = pointer(record[R_D]);
    const T lr = (T)hyper[H_LR], weight_decay = (T)hyper[H_WEIGHT_DECAY];
    const T sign = (T)hyper[H_GRAD_SIGN];
    const int decay = hyper[H_WEIGHT_DECAY] != 0.0;
#pragma omp simd
    for (int64_t i = start; i < stop; ++i) {
        const T grad = NAME(sgd_grad)(g, x, i, sign, weight_decay, decay);
        d[i] = grad;
        x[i] = x[i] - lr * grad;
    }
}

/* dots[3 t ...]: amsgd_block_sums' gap prev_lr <g, d>, then <d - g, g + lambd d>, ||d - g||^2. */
int NAME(am_sgd_sums)(const int64_t *records, int64_t count, const double *hyper, double *dots,
                      int threads)
{
    const int status =
        run_chunks(records, count, hyper, NULL, NAME(sgd_sums_chunk), dots, 3, threads);
    for (int64_t t = 0; status == 0 && t < count; ++t)
        dots[3 * t] *= NAME(load)(records[t * R_FIELDS + R_PREV_LR]);
    return status;
}

int NAME(am_sgd_update)(const int64_t *records, int64_t count, const double *hyper,
                        const double *betas, int threads)
{
    double *constants = calloc((size_t)(count > 0 ? count : 1) * K_FIELDS, sizeof *constants);
    if (constants == NULL)
        return -1;
    for (int64_t t = 0; t < count; ++t)
        constants[t * K_FIELDS + K_ONE_MINUS_BETA] =
            ((T)1 - (T)betas[t]) / (T)(1 + hyper[H_LAMBD]);
    const int status =
        run_chunks(records, count, hyper, constants, NAME(sgd_update_chunk), NULL, 0, threads);
    for (int64_t t = 0; status == 0 && t < count; ++t) {
        const int64_t *record = records + t * R_FIELDS;
        NAME(store)(record[R_BETA], (T)betas[t]);
        NAME(store)(record[R_PREV_LR], (T)hyper[H_LR]);
    }
    free(constants);
    return status;
}

int NAME(am_sgd_first)(const int64_t *records, int64_t count, const double *hyper, int threads)
{
    const int status =
        run_chunks(records, count, hyper, NULL, NAME(sgd_first_chunk), NULL, 0, threads);
    for (int64_t t = 0; status == 0 && t < count; ++t)
        NAME(store)(records[t * R_FIELDS + R_PREV_LR], (T)hyper[H_LR]);
    return status;
}

/*
 * amsgd_terms_from_dots with the gap prev_lr <g, d>, then beta (am_select_beta), and the
 * update's weight (1 - beta) / (1 + lambd) as am_sgd_update computes it.
 */
static void NAME(sgd_solve)(const int64_t *record, const double *hyper, double *constants,
                            const double *dots, double *beta_out)
{
    const double scale = hyper[H_LR] / (1 + hyper[H_LAMBD]);
    const double gap = NAME(load)(record[R_PREV_LR]) * dots[0];
    const double beta = am_select_beta(gap - scale * dots[1], scale * dots[2], hyper[H_CAP]);
    *beta_out = beta;
    constants[K_BETA] = beta;
    constants[K_ONE_MINUS_BETA] = ((T)1 - (T)beta) / (T)(1 + hyper[H_LAMBD]);
}

/* A step of tensors that are each their own block: sums, beta and update per run of tensors;
 * betas[t] receives tensor t's beta. */
int NAME(am_sgd_steps)(const int64_t *records, int64_t count, const double *hyper, double *betas,
                       int threads)
{
    double *constants = calloc((size_t)(count > 0 ? count : 1) * K_FIELDS, sizeof *constants);
    if (constants == NULL)
        return -1;
    const int status =
        run_tensor_steps(records, count, hyper, constants, NAME(sgd_sums_chunk), 3,
                         NAME(sgd_solve), NAME(sgd_update_chunk), betas, threads);
    for (int64_t t = 0; status == 0 && t < count; ++t) {
        const int64_t *record = records + t * R_FIELDS;
        NAME(store)(record[R_BETA], (T)constants[t * K_FIELDS + K_BETA]);
        NAME(store)(record[R_PREV_LR], (T)hyper[H_LR]);
    }
    free(constants);
    return status;
}

/* -------------------------------------------------------------------------- AM-AdamW */

/*
 * amadamw_preconditioner: P = (1 - beta1_max Pi) (sqrt(v / (1 - beta2^k)) + eps), dividing by
 * the bias factor as a multiplication by its reciprocal, as the foreach path does.
 */
ALWAYS_INLINE T NAME(preconditioner)(T v, T bias_correction1, T inv_bias_correction2, T eps)
{
    return bias_correction1 * (SQRT(v * inv_bias_correction2) + eps);
}

/*
 * amadamw_block_sums for one chunk: advance v and add the four inner products of a, b:
 * <g, d / P_last + mu x> (P_last = P_{t-1} for the displacement gap, P_t for compat),
 * <x, d - g>, <M (d - g), g + pull d> and <d - g, M (d - g)>, M = 1 / (P (1 + pull)), with
 * pull = pull_weight. x is read only with weight decay, as in the foreach path.
 */
ALWAYS_INLINE void NAME(adamw_sums_body)(const int64_t *record, const double *hyper,
                                         const double *constants, int64_t start, int64_t stop,
                                         double *sums, int compat, int decay, int scale_invariant)
{
    const T *restrict x = pointer(record[R_X]);
    const T *restrict g = pointer(record[R_G]);
    const T *restrict d = pointer(record[R_D]);
    T *restrict v = pointer(record[R_V]);
    const T beta2 = (T)hyper[H_BETA2], one_minus_beta2 = (T)(1 - hyper[H_BETA2]);
    const T sign = (T)hyper[H_GRAD_SIGN];
    const T eps = (T)hyper[H_EPS], lambd = (T)hyper[H_LAMBD], mu = (T)hyper[H_WEIGHT_DECAY];
    const T bc1 = (T)constants[K_BC1], inv_bc2 = (T)constants[K_INV_BC2];
    const T prev_bc1 = (T)constants[K_PREV_BC1], inv_prev_bc2 = (T)constants[K_INV_PREV_BC2];
    for (int64_t block = start; block < stop; block += BLOCK) {
        const int64_t end = block + BLOCK < stop ? block + BLOCK : stop;
        T gap = 0, weight_decay = 0, pull = 0, curvature = 0;
#pragma omp simd reduction(+ : gap, weight_decay, pull, curvature)
        for (int64_t i = block; i < end; ++i) {
            const T grad = sign * g[i], memory = d[i], old_v = v[i];
            const T new_v = beta2 * old_v + one_minus_beta2 * grad * grad;
            v[i] = new_v;
            const T p = NAME(preconditioner)(new_v, bc1, inv_bc2, eps);
            /* displacement_gap rebuilds P_{t-1} from the v this loop just replaced. */
            const T last_p =
                compat ? p : NAME(preconditioner)(old_v, prev_bc1, inv_prev_bc2, eps);
            const T difference = memory - grad;
            /* Dividing twice, as amadamw_terms does: P (1 + pull) may overflow. */
            const T pull_weight = NAME(pull_weight)(lambd, p, scale_invariant);
            const T metric_difference = difference / p / (1 + pull_weight);
            gap += decay ? grad * (memory / last_p + mu * x[i]) : grad * (memory / last_p);
            if (decay)
                weight_decay += x[i] * difference;
            pull += metric_difference * (grad + pull_weight * memory);
            curvature += difference * metric_difference;
        }
        sums[0] += gap;
        sums[1] += weight_decay;
        sums[2] += pull;
        sums[3] += curvature;
    }
}

/*
 * One copy of the loop per combination of the flags, each a compile-time constant in its copy:
 * with the scale-invariant flag read at run time instead, the fused step took 3x as long.
 */
static void NAME(adamw_sums_chunk)(const int64_t *record, const double *hyper,
                                   const double *constants, int64_t start, int64_t stop,
                                   double *sums)
{
#define SUMS(compat, decay, scale_invariant)                                                 \
    NAME(adamw_sums_body)(record, hyper, constants, start, stop, sums, compat, decay,       \
                          scale_invariant)
    const int flags = (hyper[H_COMPAT_GAP] != 0.0) << 2 | (hyper[H_WEIGHT_DECAY] != 0.0) << 1 |
                      (hyper[H_SCALE_INVARIANT] != 0.0);
    switch (flags) {
    case 0: SUMS(0, 0, 0); break;
    case 1: SUMS(0, 0, 1); break;
    case 2: SUMS(0, 1, 0); break;
    case 3: SUMS(0, 1, 1); break;
    case 4: SUMS(1, 0, 0); break;
    case 5: SUMS(1, 0, 1); break;
    case 6: SUMS(1, 1, 0); break;
    default: SUMS(1, 1, 1); break;
    }
#undef SUMS
}

/*
 * amadamw_tensor_step with P from v (already advanced): d <- lerp(d, g, w),
 * w = (1 - beta) / (1 + pull_weight); x <- (1 - mu lr) x - lr d / P, or with Nesterov
 * x <- (1 - mu lr) x - lr lerp(d, bc1 g, w) / P, bc1 = 1 - beta1_max Pi.
 * With `advance`, first advance v as the sums pass does (a first step, which has no sums).
 */
ALWAYS_INLINE void NAME(adamw_update_body)(const int64_t *record, const double *hyper,
                                           const double *constants, int64_t start,
                                           int64_t stop, int advance, int nesterov,
                                           int scale_invariant)
{
    T *restrict x = pointer(record[R_X]);
    const T *restrict g = pointer(record[R_G]);
    T *restrict d = pointer(record[R_D]);
    T *restrict v = pointer(record[R_V]);
    const T beta2 = (T)hyper[H_BETA2], one_minus_beta2 = (T)(1 - hyper[H_BETA2]);
    const T sign = (T)hyper[H_GRAD_SIGN];
    const T eps = (T)hyper[H_EPS], lambd = (T)hyper[H_LAMBD], lr = (T)hyper[H_LR];
    const T decay_factor = (T)(1 - hyper[H_WEIGHT_DECAY] * hyper[H_LR]);
    const T bc1 = (T)constants[K_BC1], inv_bc2 = (T)constants[K_INV_BC2];
    const T one_minus_beta = (T)constants[K_ONE_MINUS_BETA];
#pragma omp simd
    for (int64_t i = start; i < stop; ++i) {
        const T grad = sign * g[i];
        T second_moment = v[i];
        if (advance) {
            second_moment = beta2 * second_moment + one_minus_beta2 * grad * grad;
            v[i] = second_moment;
        }
        const T p = NAME(preconditioner)(second_moment, bc1, inv_bc2, eps);
        const T weight = one_minus_beta / (1 + NAME(pull_weight)(lambd, p, scale_invariant));
        const T memory = NAME(lerp)(d[i], grad, weight);
        d[i] = memory;
        const T direction = nesterov ? NAME(lerp)(memory, bc1 * grad, weight) : memory;
        x[i] = decay_factor * x[i] - lr * (direction / p);
    }
}

/* The update loop with its flags as compile-time constants (see adamw_sums_chunk). */
ALWAYS_INLINE void NAME(adamw_update_flags)(const int64_t *record, const double *hyper,
                                            const double *constants, int64_t start,
                                            int64_t stop, int advance)
{
#define UPDATE(nesterov, scale_invariant)                                                    \
    NAME(adamw_update_body)(record, hyper, constants, start, stop, advance, nesterov,       \
                            scale_invariant)
    const int flags = (hyper[H_NESTEROV] != 0.0) << 1 | (hyper[H_SCALE_INVARIANT] != 0.0);
    switch (flags) {
    case 0: UPDATE(0, 0); break;
    case 1: UPDATE(0, 1); break;
    case 2: UPDATE(1, 0); break;
    default: UPDATE(1, 1); break;
    }
#undef UPDATE
}

static void NAME(adamw_update_chunk)(const int64_t *record, const double *hyper,
                                     const double *constants, int64_t start, int64_t stop,
                                     double *sums)
{
    (void)sums;
    NAME(adamw_update_flags)(record, hyper, constants, start, stop, 0);
}

static void NAME(adamw_first_chunk)(const int64_t *record, const double *hyper,
                                    const double *constants, int64_t start, int64_t stop,
                                    double *sums)
{
    (void)sums;
    NAME(adamw_update_flags)(record, hyper, constants, start, stop, 1);
}

/*
 * 1 / (1 - beta2^k), the reciprocal of Adam's second bias factor at step k, in T as the
 * reference computes it (beta2 rounded to T first: 1 - 0.999f is 1.3e-5 off 0.001).
 */
static T NAME(inv_bias_correction2)(double beta2, T step)
{
    return (T)1 / ((T)1 - POW((T)beta2, step));
}

/*
 * dots[4 t ...]: the gap (displacement_gap or compat_gap), <x, d - g>, <M (d - g), g + pull d>
 * and <d - g, M (d - g)>.
 */
/*
 * The constants of a step past the first, per tensor (amadamw_block_sums): the bias factor
 * 1 - beta1_max Pi of this step and of the last, and Adam's second bias factors; NULL if they
 * cannot be allocated.
 */
static double *NAME(adamw_constants)(const int64_t *records, int64_t count, const double *hyper)
{
    double *constants = calloc((size_t)(count > 0 ? count : 1) * K_FIELDS, sizeof *constants);
    if (constants == NULL)
        return NULL;
    const double beta2 = hyper[H_BETA2];
    for (int64_t t = 0; t < count; ++t) {
        const int64_t *record = records + t * R_FIELDS;
        double *k = constants + t * K_FIELDS;
        const T step = NAME(load)(record[R_STEP]) + 1;
        k[K_BC1] = (T)1 - (T)hyper[H_CAP] * NAME(load)(record[R_BETA_PRODUCT]);
        k[K_INV_BC2] = NAME(inv_bias_correction2)(beta2, step);
        k[K_PREV_BC1] = NAME(load)(record[R_PREV_BIAS_CORRECTION1]);
        k[K_INV_PREV_BC2] = NAME(inv_bias_correction2)(beta2, step - 1);
    }
    return constants;
}

/* gap_scale: the factor of <g, d / P_last + mu x> in the gap. */
static double NAME(adamw_gap_scale)(const int64_t *record, const double *hyper)
{
    const double lr = hyper[H_LR], mu = hyper[H_WEIGHT_DECAY];
    const double prev_lr = NAME(load)(record[R_PREV_LR]);
    return hyper[H_COMPAT_GAP] != 0.0 ? (1 + mu * lr) * prev_lr : prev_lr / (1 - mu * prev_lr);
}

/* After a tensor's sums: its step count and this step's bias factor. */
static void NAME(adamw_record_sums)(const int64_t *record, const double *constants)
{
    NAME(store)(record[R_STEP], NAME(load)(record[R_STEP]) + 1);
    NAME(store)(record[R_PREV_BIAS_CORRECTION1], (T)constants[K_BC1]);
}

int NAME(am_adamw_sums)(const int64_t *records, int64_t count, const double *hyper, double *dots,
                        int threads)
{
    double *constants = NAME(adamw_constants)(records, count, hyper);
    if (constants == NULL)
        return -1;
    const int status =
        run_chunks(records, count, hyper, constants, NAME(adamw_sums_chunk), dots, 4, threads);
    for (int64_t t = 0; status == 0 && t < count; ++t) {
        const int64_t *record = records + t * R_FIELDS;
        dots[4 * t] *= NAME(adamw_gap_scale)(record, hyper);
        NAME(adamw_record_sums)(record, constants + t * K_FIELDS);
    }
    free(constants);
    return status;
}

/* amadamw_terms_from_dots with the gap of gap_scale, then beta (am_select_beta). */
static void NAME(adamw_solve)(const int64_t *record, const double *hyper, double *constants,
                              const double *dots, double *beta_out)
{
    const double lr = hyper[H_LR], mu = hyper[H_WEIGHT_DECAY];
    const double gap = dots[0] * NAME(adamw_gap_scale)(record, hyper);
    const double beta = am_select_beta(gap - lr * (mu * dots[1] + dots[2]), lr * dots[3],
                                       hyper[H_CAP]);
    *beta_out = beta;
    constants[K_BETA] = beta;
    constants[K_ONE_MINUS_BETA] = (T)1 - (T)beta;
}

/* A step of tensors that are each their own block: sums, beta and update per run of tensors;
 * betas[t] receives tensor t's beta. */
int NAME(am_adamw_steps)(const int64_t *records, int64_t count, const double *hyper,
                         double *betas, int threads)
{
    double *constants = NAME(adamw_constants)(records, count, hyper);
    if (constants == NULL)
        return -1;
    const int status =
        run_tensor_steps(records, count, hyper, constants, NAME(adamw_sums_chunk), 4,
                         NAME(adamw_solve), NAME(adamw_update_chunk), betas, threads);
    for (int64_t t = 0; status == 0 && t < count; ++t) {
        const int64_t *record = records + t * R_FIELDS;
        const double *k = constants + t * K_FIELDS;
        const T beta = (T)k[K_BETA];
        NAME(adamw_record_sums)(record, k);
        NAME(store)(record[R_BETA], beta);
        NAME(store)(record[R_BETA_PRODUCT], NAME(load)(record[R_BETA_PRODUCT]) * beta);
        NAME(store)(record[R_PREV_LR], (T)hyper[H_LR]);
    }
    free(constants);
    return status;
}

/*
 * Apply a step to `count` AM-AdamW tensors with betas[t] (NULL: a first step, which advances
 * v and the step count here and uses beta = beta1_max), and record beta, Pi and lr.
 */
static int NAME(adamw_apply)(const int64_t *records, int64_t count, const double *hyper,
                             const double *betas, int threads)
{
    double *constants = calloc((size_t)(count > 0 ? count : 1) * K_FIELDS, sizeof *constants);
    if (constants == NULL)
        return -1;
    const int first = betas == NULL;
    for (int64_t t = 0; t < count; ++t) {
        const int64_t *record = records + t * R_FIELDS;
        double *k = constants + t * K_FIELDS;
        const T beta = (T)(first ? hyper[H_CAP] : betas[t]);
        const T step = NAME(load)(record[R_STEP]) + (first ? 1 : 0);
        k[K_BC1] = first ? (T)1 - (T)hyper[H_CAP] * NAME(load)(record[R_BETA_PRODUCT])
                         : NAME(load)(record[R_PREV_BIAS_CORRECTION1]);
        k[K_INV_BC2] = NAME(inv_bias_correction2)(hyper[H_BETA2], step);
        k[K_ONE_MINUS_BETA] = (T)1 - beta;
    }
    const chunk_fn fn = first ? NAME(adamw_first_chunk) : NAME(adamw_update_chunk);
    const int status = run_chunks(records, count, hyper, constants, fn, NULL, 0, threads);
    for (int64_t t = 0; status == 0 && t < count; ++t) {
        const int64_t *record = records + t * R_FIELDS;
        const T beta = (T)(first ? hyper[H_CAP] : betas[t]);
        if (first) {
            NAME(store)(record[R_STEP], NAME(load)(record[R_STEP]) + 1);
            NAME(store)(record[R_PREV_BIAS_CORRECTION1], (T)constants[t * K_FIELDS + K_BC1]);
        }
        NAME(store)(record[R_BETA], beta);
        NAME(store)(record[R_BETA_PRODUCT], NAME(load)(record[R_BETA_PRODUCT]) * beta);
        NAME(store)(record[R_PREV_LR], (T)hyper[H_LR]);
    }
    free(constants);
    return status;
}

int NAME(am_adamw_update)(const int64_t *records, int64_t count, const double *hyper,
                          const double *betas, int threads)
{
    return NAME(adamw_apply)(records, count, hyper, betas, threads);
}

int NAME(am_adamw_first)(const int64_t *records, int64_t count, const double *hyper, int threads)
{
    return NAME(adamw_apply)(records, count, hyper, NULL, threads);
}
