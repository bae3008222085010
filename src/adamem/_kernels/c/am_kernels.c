/*
 * Fused AM-SGD and AM-AdamW steps on contiguous CPU tensors: the `fused` path of adamem.
 *
 * adamem/_jit.py compiles this file on first use (plain C11 with OpenMP and no Python or torch
 * headers, so the build takes about a second) and adamem/_fused.py calls it through ctypes on
 * raw data pointers. The arithmetic repeats the reference path (amsgd.py, amadamw.py)
 * operation by operation, in the tensor's dtype, except where a comment says otherwise (a few
 * ulps apart; see docs/speed.md). Beta itself is never computed here: Python
 * solves it with adamem.beta from the sums returned by the `sums` entry points, and hands it
 * back to the `update` entry points.
 *
 * A tensor past its first step takes two passes, because beta needs sums over its whole
 * block before any element may change:
 *   am_<kind>_sums_<dtype>    reads g, d (and v, x where the model needs them), advances v,
 *                             and returns each tensor's inner products, from which Python
 *                             forms the (a, b) of ALGORITHMS.md section 4;
 *   am_<kind>_update_<dtype>  applies the solved betas to d and x.
 * A first step follows a fixed rule and takes one pass (am_<kind>_first_<dtype>).
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
 * H_SCALE_INVARIANT, H_GRAD_SIGN, and H_FIELDS) and MAX_DOTS are defined on the compiler's command line by adamem/_jit.py, from
 * the one layout both backends share (adamem/_kernel_contract.py).
 */
#if !defined(R_FIELDS) || !defined(H_FIELDS) || !defined(MAX_DOTS)
#error "compile through adamem/_jit.py, which defines the kernel contract (R_*, H_*, MAX_DOTS)"
#endif

/* Per-tensor constants that the prologues compute once (bias factors, 1 - beta). */
enum { K_BC1, K_INV_BC2, K_PREV_BC1, K_INV_PREV_BC2, K_ONE_MINUS_BETA, K_FIELDS };

#define CHUNK 16384 /* elements per work item: 64 KiB of fp32 per array */
#define BLOCK 512   /* elements summed in the tensor's dtype before adding into double */

typedef void (*chunk_fn)(const int64_t *record, const double *hyper, const double *constants,
                         int64_t start, int64_t stop, double *sums);

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
