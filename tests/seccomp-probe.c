/*
 * seccomp-probe: issues exact syscalls inside a container and prints what
 * each one returned, so that the same probes can be run under two runtimes
 * and their outputs compared line by line.
 *
 *   seccomp-probe [-x] PROBE...
 *
 * Every PROBE is NAME or NAME:ARG and gives one line on stdout:
 *
 *   PROBE: ok                    the syscall succeeded
 *   PROBE: errno ENAME           it failed with that errno
 *   PROBE: killed by SIGNAME     the process making it was killed
 *
 * Each probe runs in a forked child, so a probe that changes the process
 * (unshare, personality, ptrace) or is killed by the filter does not
 * disturb the next one. With -x the probes run in this process instead:
 * a SCMP_ACT_KILL_PROCESS rule then kills the container's process itself,
 * which the runtime reports as exit status 128 + SIGSYS = 159.
 *
 * Syscalls are made with syscall(2) rather than libc's wrappers, which may
 * pick a different syscall (chmod as fchmodat, mkdir as mkdirat).
 *
 * Built statically by the tests (cc -static -O2), so it runs in a busybox
 * root filesystem that has no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SCRATCH_DIR "/dev/shm/seccomp-probe-dir"
#define SCRATCH_DIR_I386 "/dev/shm/seccomp-probe-dir-i386"
#define SCRATCH_DIR_X32 "/dev/shm/seccomp-probe-dir-x32"
#define SCRATCH_FILE "/dev/shm/seccomp-probe-file"
#define MOUNT_POINT "/dev/shm"

/* The x32 ABI: x86_64 syscall numbers with bit 30 set. */
#define X32_SYSCALL_BIT 0x40000000UL
/* mkdir in the i386 table (arch/x86/entry/syscalls/syscall_32.tbl). */
#define I386_NR_MKDIR 39

static void say(const char *probe, const char *result)
{
	/* One write per line: lines from forked children never interleave. */
	char line[512];
	int n = snprintf(line, sizeof line, "%s: %s\n", probe, result);
	if (n > 0)
		(void)!write(1, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void say_errno(const char *probe, int err)
{
	char text[64];
	const char *name = strerrorname_np(err);
	if (name)
		snprintf(text, sizeof text, "errno %s", name);
	else
		snprintf(text, sizeof text, "errno %d", err);
	say(probe, text);
}

static long result_of(long rc)
{
	return rc < 0 ? errno : 0;
}

/* mkdir through the i386 entry point (int 0x80), as a 32-bit program
 * would make it; the seccomp filter sees AUDIT_ARCH_I386. The path must be
 * addressable with 32 bits, which it is in a static non-PIE binary. */
static long mkdir_i386(const char *path, unsigned mode)
{
	long rc;
	__asm__ volatile("int $0x80"
			 : "=a"(rc)
			 : "0"((long)I386_NR_MKDIR), "b"(path), "c"(mode)
			 : "memory");
	if (rc < 0 && rc > -4096) {
		errno = (int)-rc;
		return -1;
	}
	return rc;
}

static int ensure_scratch_file(void)
{
	int fd = open(SCRATCH_FILE, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/* Runs one probe; returns 0 or the errno. -1 means an unknown probe. */
static long run_probe(const char *name, const char *arg)
{
	if (!strcmp(name, "mkdir")) {
		const char *path = arg ? arg : SCRATCH_DIR;
		long rc = syscall(SYS_mkdir, path, 0755);
		if (rc == 0 && !arg)
			rmdir(path);
		return result_of(rc);
	}
	if (!strcmp(name, "mkdir-i386")) {
		long rc = mkdir_i386(SCRATCH_DIR_I386, 0755);
		if (rc == 0)
			rmdir(SCRATCH_DIR_I386);
		return result_of(rc);
	}
	if (!strcmp(name, "mkdir-x32")) {
		long rc = syscall(X32_SYSCALL_BIT | SYS_mkdir, SCRATCH_DIR_X32, 0755);
		if (rc == 0)
			rmdir(SCRATCH_DIR_X32);
		return result_of(rc);
	}
	if (!strcmp(name, "exists")) {
		struct stat st;
		return result_of(stat(arg ? arg : SCRATCH_DIR, &st));
	}
	if (!strcmp(name, "chmod")) {
		unsigned long mode = arg ? strtoul(arg, NULL, 8) : 0644;
		if (ensure_scratch_file() < 0)
			return errno;
		return result_of(syscall(SYS_chmod, SCRATCH_FILE, mode));
	}
	if (!strcmp(name, "unshare")) {
		unsigned long flags = arg ? strtoul(arg, NULL, 0) : 0;
		return result_of(syscall(SYS_unshare, flags));
	}
	if (!strcmp(name, "sethostname")) {
		const char *host = arg ? arg : "probe";
		return result_of(syscall(SYS_sethostname, host, strlen(host)));
	}
	if (!strcmp(name, "ptrace"))
		return result_of(syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0));
	if (!strcmp(name, "personality")) {
		unsigned long persona = arg ? strtoul(arg, NULL, 0) : 0xffffffffUL;
		return result_of(syscall(SYS_personality, persona));
	}
	if (!strcmp(name, "mount")) {
		long rc = syscall(SYS_mount, "tmpfs", MOUNT_POINT, "tmpfs", 0UL, "size=64k");
		if (rc == 0)
			umount2(MOUNT_POINT, MNT_DETACH);
		return result_of(rc);
	}
	if (!strcmp(name, "open_by_handle_at")) {
		/* A handle that names nothing: without a filter the kernel
		 * rejects it (ESTALE, EINVAL...), never with EPERM when the
		 * caller has CAP_DAC_READ_SEARCH. */
		struct {
			unsigned int handle_bytes;
			int handle_type;
			unsigned char f_handle[8];
		} handle = {8, 1, {0}};
		long rc = syscall(SYS_open_by_handle_at, AT_FDCWD, &handle, O_RDONLY);
		if (rc >= 0)
			close((int)rc);
		return result_of(rc);
	}
	if (!strcmp(name, "keyctl")) {
		/* KEYCTL_GET_KEYRING_ID (0) of the session keyring (-3). */
		return result_of(syscall(SYS_keyctl, 0L, -3L, 0L));
	}
	if (!strcmp(name, "umount-force")) {
		/* A path that does not exist: without a filter ENOENT, and
		 * nothing is ever unmounted. */
		return result_of(syscall(SYS_umount2, "/seccomp-probe-nonexistent", MNT_FORCE));
	}
	if (!strcmp(name, "bpf")) {
		/* An unknown command: without a filter EINVAL. */
		return result_of(syscall(SYS_bpf, 9999L, NULL, 0L));
	}
	if (!strcmp(name, "init_module"))
		return result_of(syscall(SYS_init_module, NULL, 0UL, ""));
	if (!strcmp(name, "kexec_load")) {
		/* Flag 0x100 is unknown, so a kernel that lets the call through
		 * refuses it with EINVAL before it loads or unloads anything. */
		return result_of(syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0x100UL));
	}
	return -1;
}

/* NAME:ARG split into name and arg (NULL without ':'). */
static void split(const char *probe, char *name, size_t size, const char **arg)
{
	const char *colon = strchr(probe, ':');
	size_t len = colon ? (size_t)(colon - probe) : strlen(probe);
	if (len >= size)
		len = size - 1;
	memcpy(name, probe, len);
	name[len] = 0;
	*arg = colon ? colon + 1 : NULL;
}

static void report(const char *probe, long err)
{
	if (err == 0)
		say(probe, "ok");
	else
		say_errno(probe, (int)err);
}

static int probe_here(const char *probe)
{
	char name[64];
	const char *arg;
	split(probe, name, sizeof name, &arg);
	long err = run_probe(name, arg);
	if (err == -1) {
		say(probe, "unknown probe");
		return 2;
	}
	report(probe, err);
	return 0;
}

static int probe_in_child(const char *probe)
{
	pid_t pid = fork();
	if (pid < 0) {
		say_errno("fork", errno);
		return 1;
	}
	if (pid == 0)
		_exit(probe_here(probe));
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			say_errno("waitpid", errno);
			return 1;
		}
	}
	if (WIFSIGNALED(status)) {
		char text[64];
		const char *sig = sigabbrev_np(WTERMSIG(status));
		if (sig)
			snprintf(text, sizeof text, "killed by SIG%s", sig);
		else
			snprintf(text, sizeof text, "killed by signal %d", WTERMSIG(status));
		say(probe, text);
		return 0;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
	int in_process = 0;
	int first = 1;
	if (argc > 1 && !strcmp(argv[1], "-x")) {
		in_process = 1;
		first = 2;
	}
	if (first >= argc) {
		fprintf(stderr, "usage: seccomp-probe [-x] PROBE...\n");
		return 2;
	}
	int status = 0;
	for (int i = first; i < argc; i++) {
		int rc = in_process ? probe_here(argv[i]) : probe_in_child(argv[i]);
		if (rc)
			status = rc;
	}
	return status;
}
