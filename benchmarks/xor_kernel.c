/* The XOR network (2 -> H -> 1, tanh/tanh, SSE, full-batch SGD) written out by hand in C:
 * the same arithmetic as benchmarks/xor_peers.py's hand-written Numba kernel, built by
 * benchmarks/cpeer.py with the system's C compiler (-O3 -march=native) and called via ctypes.
 * It is the physical limit on the table: no interpreter, no bounds, libm's tanh. */
#include <math.h>

#define MAX_HIDDEN 64

/* w1: hidden x 2 (row-major), b1: hidden, w2: hidden, b2: 1, x: samples x 2, y: samples.
 * Trains in place; returns the last epoch's loss (before its update), or -1 if hidden is too big. */
double xor_train(double *w1, double *b1, double *w2, double *b2, const double *x, const double *y,
                 long samples, long hidden, double lr, long epochs) {
    double h[MAX_HIDDEN], gw1[2 * MAX_HIDDEN], gb1[MAX_HIDDEN], gw2[MAX_HIDDEN];
    double loss = 0.0;
    if (hidden > MAX_HIDDEN) return -1.0;
    for (long e = 0; e < epochs; e++) {
        double gb2 = 0.0;
        loss = 0.0;
        for (long j = 0; j < hidden; j++) {
            gw1[2 * j] = 0.0;
            gw1[2 * j + 1] = 0.0;
            gb1[j] = 0.0;
            gw2[j] = 0.0;
        }
        for (long s = 0; s < samples; s++) {
            double x0 = x[2 * s], x1 = x[2 * s + 1];
            double z2 = b2[0];
            for (long j = 0; j < hidden; j++) {
                h[j] = tanh(b1[j] + w1[2 * j] * x0 + w1[2 * j + 1] * x1);
                z2 += w2[j] * h[j];
            }
            double o = tanh(z2);
            double d = o - y[s];
            loss += d * d;
            double dz2 = 2.0 * d * (1.0 - o * o);
            gb2 += dz2;
            for (long j = 0; j < hidden; j++) {
                gw2[j] += dz2 * h[j];
                double dz1 = dz2 * w2[j] * (1.0 - h[j] * h[j]);
                gb1[j] += dz1;
                gw1[2 * j] += dz1 * x0;
                gw1[2 * j + 1] += dz1 * x1;
            }
        }
        for (long j = 0; j < hidden; j++) {
            w1[2 * j] -= lr * gw1[2 * j];
            w1[2 * j + 1] -= lr * gw1[2 * j + 1];
            b1[j] -= lr * gb1[j];
            w2[j] -= lr * gw2[j];
        }
        b2[0] -= lr * gb2;
    }
    return loss;
}
