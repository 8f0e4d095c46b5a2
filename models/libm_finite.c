/* The glibc entry points Debian's Autotalent build (0.2-6) still links: glibc 2.31 dropped the
 * `__*_finite` aliases, so that plugin no longer loads. models/compare.py preloads these, which
 * forward to the ordinary functions, to run it at all. Nothing of autotuned uses this. */
#include <math.h>

double __exp_finite(double x) { return exp(x); }
double __exp2_finite(double x) { return exp2(x); }
double __log10_finite(double x) { return log10(x); }
