/* cpu_classifier.c — the LM head fused with cross-entropy, chunked over
 * token rows so that at most `chunk` rows of logits [chunk, V] exist (the
 * caller's scratch): for V = 152k, full logits of a long pack would be
 * gigabytes.
 *
 * Per chunk: logits = h·wᵀ (sgemm), then per row a stable logsumexp,
 * loss[r] = lse − logits[label]; when gradients are wanted the scratch row
 * becomes dlogits = (softmax − onehot)·dloss[r] and two sgemms accumulate
 * dh += dlogits·w and dw += dlogitsᵀ·h.
 *
 * A label outside [0, V) (PyTorch's ignore_index −100, padding) marks a row
 * without a target: its loss is 0 and it adds no gradient. Gradients need
 * dloss; with dloss NULL only the loss is computed. */
#include <cblas.h>
#include <math.h>

#include "cpu.h"

void cpu_classifier_ce(float *loss, float *dh, float *dw, const float *h, const float *w, const int32_t *label,
                       const float *dloss, int n, int c, int V, float *scratch, int chunk)
{
    if (n <= 0 || V <= 0 || c <= 0)
        return;
    if (chunk <= 0 || chunk > n)
        chunk = n;
    int grad = (dh || dw) && dloss;
    float dw_beta = cpu_gw_beta(); /* grad_write: the first chunk writes dw */
    for (int r0 = 0; r0 < n; r0 += chunk) {
        int R = n - r0 < chunk ? n - r0 : chunk;
        const float *hc = h + (size_t)r0 * c;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, V, c, 1.0f, hc, c, w, c, 0.0f, scratch, V);
#pragma omp parallel for if ((size_t)R * V > CPU_OMP_MIN)
        for (int i = 0; i < R; i++) {
            float *z = scratch + (size_t)i * V;
            int y = label[r0 + i];
            if (y < 0 || y >= V) {
                if (loss)
                    loss[r0 + i] = 0.0f;
                for (int j = 0; j < V; j++)
                    z[j] = 0.0f;
                continue;
            }
            float mx = z[0];
            for (int j = 1; j < V; j++)
                mx = z[j] > mx ? z[j] : mx;
            float sum = 0.0f;
            for (int j = 0; j < V; j++)
                sum += expf(z[j] - mx);
            float lse = mx + logf(sum);
            if (loss)
                loss[r0 + i] = lse - z[y];
            if (grad) {
                float g = dloss[r0 + i];
                for (int j = 0; j < V; j++)
                    z[j] = expf(z[j] - lse) * g;
                z[y] -= g;
            }
        }
        if (!grad)
            continue;
        if (dh)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, c, V, 1.0f, scratch, V, w, c, 1.0f,
                        dh + (size_t)r0 * c, c);
        if (dw) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, c, R, 1.0f, scratch, V, hc, c, dw_beta, dw, c);
            dw_beta = 1.0f;
        }
    }
}
