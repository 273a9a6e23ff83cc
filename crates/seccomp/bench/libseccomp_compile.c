/*
 * The libseccomp half of runc's seccomp setup, timed: build the filter for
 * a profile and export its BPF, as runc's InitSeccomp and patchbpf do
 * before loading (runc adds Go-side work on top: a JSON conversion, the
 * export through a pipe and a disassemble/reassemble for the ENOSYS stub).
 *
 * Input: the rule list `compile_bench --libseccomp-rules FILE` writes, the
 * same profile after runc's own rewriting (rules equal to the default
 * action dropped, repeated argument indexes split):
 *   default ACTION
 *   arch NAME
 *   rule ACTION SYSCALL NARGS [INDEX OP VALUE VALUE2]...
 *
 *   cc -O2 -o /tmp/libseccomp_compile bench/libseccomp_compile.c -lseccomp
 *   /tmp/libseccomp_compile RULES [ROUNDS [BPF_OUT]]
 *
 * BPF_OUT receives the exported program (raw struct sock_filter array),
 * which the ignored test `agrees_with_libseccomp` compares with ours.
 */
#include <fcntl.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct rule {
	uint32_t action;
	char name[64];
	unsigned int nargs;
	struct scmp_arg_cmp args[6];
};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s RULES [ROUNDS]\n", argv[0]);
		return 2;
	}
	int rounds = argc > 2 ? atoi(argv[2]) : 2000;
	FILE *in = fopen(argv[1], "r");
	if (!in) {
		perror(argv[1]);
		return 1;
	}
	uint32_t def = 0;
	char arches[8][32];
	int narch = 0;
	static struct rule rules[4096];
	int nrules = 0;
	char word[64];
	while (fscanf(in, "%63s", word) == 1) {
		if (!strcmp(word, "default")) {
			if (fscanf(in, "%u", &def) != 1)
				return 1;
		} else if (!strcmp(word, "arch")) {
			if (narch == 8 || fscanf(in, "%31s", arches[narch++]) != 1)
				return 1;
		} else if (!strcmp(word, "rule")) {
			struct rule *r = &rules[nrules++];
			if (fscanf(in, "%u %63s %u", &r->action, r->name, &r->nargs) != 3 || r->nargs > 6)
				return 1;
			for (unsigned int i = 0; i < r->nargs; i++) {
				unsigned int op;
				unsigned long long a, b;
				if (fscanf(in, "%u %u %llu %llu", &r->args[i].arg, &op, &a, &b) != 4)
					return 1;
				r->args[i].op = op;
				r->args[i].datum_a = a;
				r->args[i].datum_b = b;
			}
		} else {
			fprintf(stderr, "unexpected %s\n", word);
			return 1;
		}
	}
	int devnull = open("/dev/null", O_WRONLY);
	double *times = calloc(rounds, sizeof(double));
	for (int round = -1; round < rounds; round++) {
		double start = now_us();
		scmp_filter_ctx ctx = seccomp_init(def);
		if (!ctx)
			return 1;
		for (int i = 0; i < narch; i++) {
			uint32_t arch = seccomp_arch_resolve_name(arches[i]);
			if (arch && arch != seccomp_arch_native())
				seccomp_arch_add(ctx, arch);
		}
		seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
		if (nrules > 32)
			seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
		for (int i = 0; i < nrules; i++) {
			int nr = seccomp_syscall_resolve_name(rules[i].name);
			if (nr == __NR_SCMP_ERROR)
				continue;
			int rc = seccomp_rule_add_array(ctx, rules[i].action, nr, rules[i].nargs, rules[i].args);
			if (rc < 0 && round < 0)
				fprintf(stderr, "rule %s: %s\n", rules[i].name, strerror(-rc));
		}
		if (seccomp_export_bpf(ctx, devnull) < 0)
			return 1;
		seccomp_release(ctx);
		if (round >= 0)
			times[round] = now_us() - start;
	}
	if (argc > 3) {
		int out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		scmp_filter_ctx ctx = seccomp_init(def);
		for (int i = 0; i < narch; i++) {
			uint32_t arch = seccomp_arch_resolve_name(arches[i]);
			if (arch && arch != seccomp_arch_native())
				seccomp_arch_add(ctx, arch);
		}
		if (nrules > 32)
			seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
		for (int i = 0; i < nrules; i++) {
			int nr = seccomp_syscall_resolve_name(rules[i].name);
			if (nr != __NR_SCMP_ERROR)
				seccomp_rule_add_array(ctx, rules[i].action, nr, rules[i].nargs, rules[i].args);
		}
		if (out < 0 || seccomp_export_bpf(ctx, out) < 0)
			return 1;
		close(out);
		seccomp_release(ctx);
	}
	qsort(times, rounds, sizeof(double), cmp_double);
	double sum = 0;
	for (int i = 0; i < rounds; i++)
		sum += times[i];
	const struct scmp_version *v = seccomp_version();
	printf("libseccomp %u.%u.%u: mean %.1f µs, min %.1f µs, median %.1f µs, p99 %.1f µs (%d rounds, %d rules)\n",
	       v->major, v->minor, v->micro, sum / rounds, times[0], times[rounds / 2],
	       times[(rounds - 1) * 99 / 100], rounds, nrules);
	return 0;
}
