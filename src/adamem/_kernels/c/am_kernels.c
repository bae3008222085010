/*
 * Fused AM-SGD and AM-AdamW steps on contiguous CPU tensors: the `fused` path of adamem.
 *
 * adamem/_kernels/build.py compiles this file on first use (plain C11 with OpenMP and no Python
 * or torch headers, so the build takes about a second) and adamem/_kernels/cpu.py calls it
 * through ctypes on raw data pointers. The arithmetic repeats the reference path (amsgd.py,
 * amadamw.py) operation by operation, in the tensor's dtype, except where a comment says
 * otherwise (a few ulps apart; see docs/speed.md). Python solves beta with adamem.beta from the
 * dots returned by the `sums` entry points and hands it back to the `update` entry points; only
 * the `steps` entry points solve it here, by the same rules (am_select_beta), for tensors that
 * are each their own block.
 *
 * A tensor past its first step takes two passes, because beta needs sums over its whole
 * block before any element may change:
 *   am_<kind>_sums_<dtype>    reads g, d (and v, x where the model needs them), advances v,
 *                             and returns each tensor's inner products, from which Python
 *                             forms the (a, b) of ALGORITHMS.md section 4;
 *   am_<kind>_update_<dtype>  applies the solved betas to d and x.
 * A first step follows a fixed rule and takes one pass (am_<kind>_first_<dtype>). Tensors that
 * are each their own block take both passes and the beta solve in one call,
 * am_<kind>_steps_<dtype> (run_tensor_steps).
 * <kind> is sgd or adamw; <dtype> is f32 or f64. Each entry point also advances the 0-d state
 * scalars (step, beta, beta_product, prev_bias_correction1, prev_lr) exactly as the reference.
 *
 * Every entry point takes `count` tensor records (R_* fields, int64: data pointers, element
 * count, pointers to the state scalars), the group's hyperparameters (H_* fields, double) and
 * a thread count, and returns 0, or -1 when it cannot allocate its work list (a few bytes per
 * CHUNK elements).
 *
 * Parallel and deterministic: the elements are cut into chunks of at most CHUNK elements, never
 * spanning two tensors, which OpenMP threads take one at a time. Sums accumulate in the tensor's
 * dtype over BLOCK elements (vectorised), in double across blocks, are stored per chunk, and are
 * added per tensor in chunk order: results depend neither on the thread count nor on which
 * thread took which chunk.
 */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * The record fields (R_*: R_X, R_G, R_D, R_V, R_NUMEL, the state scalars R_STEP, R_BETA,
 * R_BETA_PRODUCT, R_PREV_BIAS_CORRECTION1, R_PREV_LR, and R_FIELDS), the hyperparameters
 * (H_*: H_LR, H_CAP, H_BETA2, H_EPS, H_WEIGHT_DECAY, H_LAMBD, H_COMPAT_GAP, H_NESTEROV,
 * H_SCALE_INVARIANT, H_GRAD_SIGN, and H_FIELDS) and MAX_DOTS are defined on the compiler's
 * command line by adamem/_kernels/build.py, from the one layout both backends share
 * (adamem/_kernels/contract.py).
 */
#if !defined(R_FIELDS) || !defined(H_FIELDS) || !defined(MAX_DOTS)
#error "compile through adamem/_kernels/build.py, which defines the contract (R_*, H_*, MAX_DOTS)"
#endif

/* Per-tensor constants that the prologues compute once (bias factors, beta and 1 - beta). */
enum { K_BC1, K_INV_BC2, K_PREV_BC1, K_INV_PREV_BC2, K_ONE_MINUS_BETA, K_BETA, K_FIELDS };

#define CHUNK 16384 /* elements per work item: 64 KiB of fp32 per array */
#define BLOCK 512   /* elements summed in the tensor's dtype before adding into double */

typedef void (*chunk_fn)(const int64_t *record, const double *hyper, const double *constants,
                         int64_t start, int64_t stop, double *sums);

/* Forms one tensor's (a, b) from its dots, solves its beta into *beta and writes the update's
 * constants (K_BETA, K_ONE_MINUS_BETA). */
typedef void (*solve_fn)(const int64_t *record, const double *hyper, double *constants,
                         const double *dots, double *beta);

/*
 * Tensors from this size on are shared by all threads in run_tensor_steps (the smaller ones go
 * to one thread each). Measured on a 2-core machine with a 32 MiB L3 (docs/speed.md): below it,
 * a thread's tensor stays in cache between its passes and no barrier is needed; 1 << 20 let two
 * threads' tensors evict each other at 50M parameters, 1 << 18 spent more on barriers at 10M.
 */
#define SHARED_ELEMENTS (1 << 19)

typedef struct {
    int64_t tensor, start, stop;
} item_t;

static void *pointer(int64_t address) { return (void *)(intptr_t)address; }

/*
 * Run `fn` over every chunk of the `count` tensors in parallel. When nsums > 0, fn adds
 * nsums partial sums into its chunk's slot, and sums[t * nsums + j] receives tensor t's
 * totals, combined in chunk order.
 */
static int run_chunks(const int64_t *records, int64_t count, const double *hyper,
                      const double *constants, chunk_fn fn, double *sums, int nsums,
                      int threads)
{
    int64_t items = 0, elements = 0;
    for (int64_t t = 0; t < count; ++t) {
        const int64_t numel = records[t * R_FIELDS + R_NUMEL];
        items += (numel + CHUNK - 1) / CHUNK;
        elements += numel;
    }
    item_t *list = malloc((size_t)(items > 0 ? items : 1) * sizeof *list);
    double *partial = calloc((size_t)(items > 0 ? items : 1) * MAX_DOTS, sizeof *partial);
    if (list == NULL || partial == NULL) {
        free(list);
        free(partial);
        return -1;
    }
    int64_t next = 0;
    for (int64_t t = 0; t < count; ++t) {
        const int64_t numel = records[t * R_FIELDS + R_NUMEL];
        for (int64_t start = 0; start < numel; start += CHUNK) {
            list[next].tensor = t;
            list[next].start = start;
            list[next].stop = start + CHUNK < numel ? start + CHUNK : numel;
            ++next;
        }
    }
    /*
     * Below a few chunks the fork/join costs more than it saves. Chunks are handed out one at
     * a time: a thread that the OS preempts (a busy machine) holds up at most one chunk.
     */
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (elements >= 4 * CHUNK)
    for (int64_t i = 0; i < items; ++i) {
        const int64_t t = list[i].tensor;
        fn(records + t * R_FIELDS, hyper, constants ? constants + t * K_FIELDS : NULL,
           list[i].start, list[i].stop, partial + i * MAX_DOTS);
    }
    for (int64_t t = 0; t < count * nsums; ++t)
        sums[t] = 0.0;
    for (int64_t i = 0; i < items; ++i)
        for (int j = 0; j < nsums; ++j)
            sums[list[i].tensor * nsums + j] += partial[i * MAX_DOTS + j];
    free(list);
    free(partial);
    return 0;
}

/*
 * adamem.beta.select_beta: the maximiser of a beta - b beta^2 / 2 over [0, cap], with the rules
 * of ALGORITHMS.md section 7 (NaN inputs give 0; b > 0: clip(a / b, 0, cap), an inf ratio
 * gives cap or 0 and inf / inf gives 0; otherwise cap if a > 0, else 0).
 */
double am_select_beta(double a, double b, double cap)
{
    if (isnan(a) || isnan(b))
        return 0.0;
    if (b > 0) {
        const double ratio = a / b;
        if (isnan(ratio))
            return 0.0;
        return ratio < 0 ? 0.0 : (ratio > cap ? cap : ratio);
    }
    return a > 0 ? cap : 0.0;
}

/* Add tensor t's chunks' sums into dots[0..nsums) in chunk order, as run_chunks combines them. */
static void tensor_sums(const int64_t *records, int64_t t, const double *hyper,
                        const double *constants, chunk_fn sums_fn, int nsums, double *dots)
{
    const int64_t numel = records[t * R_FIELDS + R_NUMEL];
    for (int64_t start = 0; start < numel; start += CHUNK) {
        double partial[MAX_DOTS] = {0};
        sums_fn(records + t * R_FIELDS, hyper, constants + t * K_FIELDS, start,
                start + CHUNK < numel ? start + CHUNK : numel, partial);
        for (int j = 0; j < nsums; ++j)
            dots[j] += partial[j];
    }
}

/*
 * A step of `count` tensors that are each their own block (scope "tensor", unsharded): each
 * tensor takes its sums pass, `solve` and its update pass back to back, so that the update finds
 * the tensor's arrays still in cache. A tensor below SHARED_ELEMENTS goes to one thread (threads
 * take such tensors one at a time, with no barrier between them); a larger one is shared by all
 * threads chunk by chunk, with a barrier after each of its three stages. Each chunk's sums are
 * added in chunk order, as in run_chunks, so the results equal the two-pass step's and do not
 * depend on the thread count. betas[t] receives tensor t's beta.
 */
static int run_tensor_steps(const int64_t *records, int64_t count, const double *hyper,
                            double *constants, chunk_fn sums_fn, int nsums, solve_fn solve,
                            chunk_fn update_fn, double *betas, int threads)
{
    int64_t most_chunks = 1, elements = 0; /* partial sums of the largest shared tensor */
    for (int64_t t = 0; t < count; ++t) {
        const int64_t numel = records[t * R_FIELDS + R_NUMEL], chunks = (numel + CHUNK - 1) / CHUNK;
        if (numel >= SHARED_ELEMENTS && chunks > most_chunks)
            most_chunks = chunks;
        elements += numel;
    }
    double *partial = malloc((size_t)most_chunks * MAX_DOTS * sizeof *partial);
    if (partial == NULL)
        return -1;
#pragma omp parallel num_threads(threads) if (elements >= 4 * CHUNK)
    {
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t t = 0; t < count; ++t) {
            if (records[t * R_FIELDS + R_NUMEL] >= SHARED_ELEMENTS)
                continue;
            double dots[MAX_DOTS] = {0};
            tensor_sums(records, t, hyper, constants, sums_fn, nsums, dots);
            solve(records + t * R_FIELDS, hyper, constants + t * K_FIELDS, dots, betas + t);
            const int64_t numel = records[t * R_FIELDS + R_NUMEL];
            for (int64_t start = 0; start < numel; start += CHUNK)
                update_fn(records + t * R_FIELDS, hyper, constants + t * K_FIELDS, start,
                          start + CHUNK < numel ? start + CHUNK : numel, NULL);
        }
        for (int64_t t = 0; t < count; ++t) {
            const int64_t numel = records[t * R_FIELDS + R_NUMEL];
            if (numel < SHARED_ELEMENTS)
                continue;
            const int64_t chunks = (numel + CHUNK - 1) / CHUNK;
            const int64_t *record = records + t * R_FIELDS;
            double *k = constants + t * K_FIELDS;
#pragma omp for schedule(dynamic, 1)
            for (int64_t i = 0; i < chunks; ++i) {
                double *slot = partial + i * MAX_DOTS;
                for (int j = 0; j < MAX_DOTS; ++j)
                    slot[j] = 0.0;
                const int64_t start = i * CHUNK;
                sums_fn(record, hyper, k, start, start + CHUNK < numel ? start + CHUNK : numel,
                        slot);
            }
#pragma omp single
            {
                double dots[MAX_DOTS] = {0};
                for (int64_t i = 0; i < chunks; ++i)
                    for (int j = 0; j < nsums; ++j)
                        dots[j] += partial[i * MAX_DOTS + j];
                solve(record, hyper, k, dots, betas + t);
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t i = 0; i < chunks; ++i) {
                const int64_t start = i * CHUNK;
                update_fn(record, hyper, k, start, start + CHUNK < numel ? start + CHUNK : numel,
                          NULL);
            }
        }
    }
    free(partial);
    return 0;
}

/* NAME(am_sgd_sums) is am_sgd_sums_f32 or am_sgd_sums_f64, per the SUFFIX being built. */
#define GLUE_(base, suffix) base##_##suffix
#define GLUE(base, suffix) GLUE_(base, suffix)
#define NAME(base) GLUE(base, SUFFIX)
#define ALWAYS_INLINE static inline __attribute__((always_inline))

#define T float
#define SUFFIX f32
#define SQRT sqrtf
#define POW powf
#include "am_kernels_body.h"
#undef T
#undef SUFFIX
#undef SQRT
#undef POW

#define T double
#define SUFFIX f64
#define SQRT sqrt
#define POW pow
#include "am_kernels_body.h"
#undef T
#undef SUFFIX
#undef SQRT
#undef POW
