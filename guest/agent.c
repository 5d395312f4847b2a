/*
 * The testbed's guest agent: executes netlink primitives on request and returns exactly what
 * the kernel returned (return value, errno, msg_flags, addresses, control messages, bytes,
 * CLOCK_MONOTONIC timestamps).  Protocol: harness/protocol.py (guest/proto.h is generated).
 *
 * Static, single-threaded, no userland beyond busybox, and only syscalls and options that
 * Linux 3.14 already has, so one binary serves 3.14 and 6.x guests.
 *
 *   agent CHANNEL      CHANNEL is a tty (set to raw mode) or any read/write file;
 *                      "-" serves on stdin (a socket), which the host's unit tests use
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/io.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define MAX_RECV (1 << 20)
#define MAX_OUTPUT (1 << 20)

/* The channel to the host: a serial port (one fd both ways), or stdin/stdout (an SSH session's
 * pipes, or a socketpair in the host's tests). */
static int chan_in = -1, chan_out = -1;

/* ---- utilities ---- */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "agent: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("realloc");
	return p;
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
	static uint32_t table[256];
	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	crc = ~crc;
	while (n--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* Stop the machine at this instant by writing "panicked" to QEMU's pvpanic port, which QEMU
 * (-action panic=pause) turns into a pause; the host continues it. */
#define PVPANIC_PORT 0x505
#define PVPANIC_PANICKED 1

static void stop_machine(void)
{
	outb(PVPANIC_PANICKED, PVPANIC_PORT);
}

/* Whether a HOLD request is honoured: the channel is a device, a tty or a virtio-serial port,
 * so a reply is wholly out of the guest once tcdrain (the tty's) or write (the port's, whose
 * kick QEMU's TCG serves before the write returns) is done -- over a pipe it could still wait
 * on a process that the stop would freeze -- and the pvpanic port is ours. */
static int can_hold;

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void write_all(const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t w = write(chan_out, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write to channel");
		p += w;
		n -= w;
	}
}

/* ---- replies: a growing attribute buffer ---- */

static struct { uint8_t *p; size_t len, cap; } out;

static void out_reserve(size_t n)
{
	if (out.len + n > out.cap) {
		out.cap = (out.len + n) * 2;
		out.p = xrealloc(out.p, out.cap);
	}
}

static void put_bytes(int type, const void *v, uint32_t len)
{
	uint32_t pad = (4 - len % 4) % 4;
	out_reserve(8 + len + pad);
	uint8_t *p = out.p + out.len;
	uint16_t t = type, z = 0;
	memcpy(p, &t, 2);
	memcpy(p + 2, &z, 2);
	put32(p + 4, len);
	memcpy(p + 8, v, len);
	memset(p + 8 + len, 0, pad);
	out.len += 8 + len + pad;
}

static void put_int(int type, int64_t v) { put_bytes(type, &v, 8); }
static void put_str(int type, const char *s) { put_bytes(type, s, strlen(s)); }

static void put_error(const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	put_str(A_ERROR, msg);
}

static int64_t t_start; /* when the current request's syscall was about to run */

/* A syscall's outcome: return value, errno, and when it started and returned. */
static void put_result(long ret)
{
	int e = errno;
	put_int(A_T_START_NS, t_start);
	put_int(A_T_NS, now_ns());
	put_int(A_RET, ret);
	put_int(A_ERRNO, ret < 0 ? e : 0);
}

static void send_frame(int kind, uint32_t id)
{
	uint8_t h[PROTO_HEADER_SIZE] = {0};
	memcpy(h, PROTO_MAGIC, 4);
	h[4] = PROTO_VERSION;
	h[5] = kind;
	put32(h + 8, id);
	put32(h + 12, out.len);
	put32(h + 16, crc32_update(crc32_update(0, h, sizeof(h)), out.p, out.len));
	write_all(h, sizeof(h));
	write_all(out.p, out.len);
	out.len = 0;
}

/* ---- requests: attributes indexed by type ---- */

static struct { const uint8_t *p; uint32_t len; int present; } attr[A_MAX + 1];

static const char *parse_attrs(const uint8_t *p, uint32_t n)
{
	memset(attr, 0, sizeof(attr));
	for (uint32_t pos = 0; pos < n;) {
		if (n - pos < 8)
			return "truncated attribute header";
		uint16_t t;
		memcpy(&t, p + pos, 2);
		uint32_t len = get32(p + pos + 4);
		if (len > n - pos - 8)
			return "attribute runs past the frame";
		if (t <= A_MAX && !attr[t].present) {
			attr[t].p = p + pos + 8;
			attr[t].len = len;
			attr[t].present = 1;
		}
		pos += 8 + len + (4 - len % 4) % 4;
	}
	return NULL;
}

static int has(int t) { return attr[t].present; }

static int64_t get_int(int t, int64_t dflt)
{
	int64_t v = dflt;
	if (attr[t].present && attr[t].len == 8)
		memcpy(&v, attr[t].p, 8);
	return v;
}

/* A NUL-terminated copy of a string attribute; the caller frees it. */
static char *get_str(int t)
{
	char *s = xrealloc(NULL, attr[t].len + 1);
	memcpy(s, attr[t].p, attr[t].len);
	s[attr[t].len] = 0;
	return s;
}

static struct sockaddr_nl nl_addr(int family, int portid, int groups)
{
	struct sockaddr_nl a;
	memset(&a, 0, sizeof(a));
	a.nl_family = get_int(family, AF_NETLINK);
	a.nl_pid = get_int(portid, 0);
	a.nl_groups = get_int(groups, 0);
	return a;
}

/* ---- operations ---- */

static void op_ping(void)
{
	struct utsname u;
	uname(&u);
	put_result(0);
	put_int(A_VERSION, PROTO_VERSION);
	put_int(A_PID, getpid());
	put_str(A_RELEASE, u.release);
}

static void op_socket(void)
{
	int fd = socket(get_int(A_FAMILY, AF_NETLINK), get_int(A_TYPE, SOCK_RAW) | SOCK_CLOEXEC,
			get_int(A_PROTOCOL, NETLINK_ROUTE));
	int e = errno;
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0)
		put_int(A_INODE, st.st_ino);
	errno = e;
	put_result(fd);
}

static void op_setsockopt(void)
{
	int iv = get_int(A_INT_VALUE, 0);
	const void *v = has(A_VALUE) ? (const void *)attr[A_VALUE].p : &iv;
	socklen_t len = has(A_VALUE) ? attr[A_VALUE].len : sizeof(iv);
	put_result(setsockopt(get_int(A_FD, -1), get_int(A_LEVEL, SOL_SOCKET), get_int(A_OPTNAME, 0), v, len));
}

static void op_getsockopt(void)
{
	uint8_t v[256] = {0};
	socklen_t len = get_int(A_OPTLEN, sizeof(int));
	if (len > sizeof(v))
		len = sizeof(v);
	put_result(getsockopt(get_int(A_FD, -1), get_int(A_LEVEL, SOL_SOCKET), get_int(A_OPTNAME, 0), v, &len));
	put_int(A_OPTLEN, len);
	put_bytes(A_VALUE, v, len < sizeof(v) ? len : sizeof(v));
	if (len == sizeof(int))
		put_int(A_INT_VALUE, *(int *)v);
}

static void op_bind_connect(int op)
{
	struct sockaddr_nl a = nl_addr(A_FAMILY, A_PORTID, A_GROUPS);
	int fd = get_int(A_FD, -1);
	put_result(op == OP_BIND ? bind(fd, (struct sockaddr *)&a, sizeof(a))
				 : connect(fd, (struct sockaddr *)&a, sizeof(a)));
}

static void op_getsockname(void)
{
	struct sockaddr_nl a;
	socklen_t len = sizeof(a);
	memset(&a, 0, sizeof(a));
	put_result(getsockname(get_int(A_FD, -1), (struct sockaddr *)&a, &len));
	put_int(A_FAMILY, a.nl_family);
	put_int(A_PORTID, a.nl_pid);
	put_int(A_GROUPS, a.nl_groups);
}

static void op_sendmsg(void)
{
	struct sockaddr_nl dst = nl_addr(A_DST_FAMILY, A_DST_PORTID, A_DST_GROUPS);
	struct iovec iov = { (void *)attr[A_DATA].p, attr[A_DATA].len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (has(A_DST_FAMILY) || has(A_DST_PORTID) || has(A_DST_GROUPS)) {
		m.msg_name = &dst;
		m.msg_namelen = sizeof(dst);
	}
	put_result(sendmsg(get_int(A_FD, -1), &m, get_int(A_FLAGS, 0)));
}

/* Wait up to TIMEOUT_MS for the socket to be readable (or in error) unless the caller asked
 * for MSG_DONTWAIT; returns 0 if the wait expired.  QUEUED says whether something was there
 * already: then the reply's time is not when it arrived. */
static int wait_readable(int fd, int flags)
{
	int64_t timeout = get_int(A_TIMEOUT_MS, -1);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r = poll(&p, 1, 0);
	put_int(A_QUEUED, r > 0);
	if (r > 0 || timeout < 0 || (flags & MSG_DONTWAIT))
		return 1;
	do
		r = poll(&p, 1, timeout);
	while (r < 0 && errno == EINTR);
	return r != 0;
}

/* One recvmsg on fd, its result and everything about it put into the reply being built;
 * returns recvmsg's result, or -errno. */
static ssize_t recv_into_reply(int fd, int flags, size_t size)
{
	static uint8_t buf[MAX_RECV];
	uint8_t control[512];
	struct sockaddr_nl src;
	memset(&src, 0, sizeof(src));
	struct iovec iov = { buf, size };
	struct msghdr m = { .msg_name = &src, .msg_namelen = sizeof(src), .msg_iov = &iov,
			    .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	ssize_t r = recvmsg(fd, &m, flags);
	int e = errno;
	put_result(r);
	if (r < 0)
		return -e;
	put_int(A_MSG_FLAGS, m.msg_flags);
	put_int(A_NAMELEN, m.msg_namelen);
	put_int(A_SRC_FAMILY, src.nl_family);
	put_int(A_SRC_PORTID, src.nl_pid);
	put_int(A_SRC_GROUPS, src.nl_groups);
	put_bytes(A_CONTROL, control, m.msg_controllen);
	put_bytes(A_DATA, buf, (size_t)r < size ? (size_t)r : size);
	return r;
}

static size_t recv_size(void)
{
	size_t size = get_int(A_BUFSIZE, 65536);
	return size > MAX_RECV ? MAX_RECV : size;
}

static void op_recvmsg(void)
{
	int fd = get_int(A_FD, -1), flags = get_int(A_FLAGS, 0);
	if (!wait_readable(fd, flags)) {
		put_int(A_T_NS, now_ns());
		put_int(A_TIMED_OUT, 1);
		return;
	}
	recv_into_reply(fd, flags, recv_size());
}

/* Streamed sockets: the serve loop polls them and sends each datagram (or error, such as
 * ENOBUFS) at once as an EVENT, so the host sees messages as they arrive while it goes on
 * issuing requests. */
#define MAX_STREAMS 8
static struct {
	int fd;
	uint32_t id;
	size_t size;
	/* an UNSTREAM with TIMEOUT_MS waits (its reply deferred) until the stream has been quiet that long */
	uint32_t unstream_id;
	int64_t quiet_ns, last_ns;
} streams[MAX_STREAMS];
static int n_streams;
static int reply_deferred; /* the current request is answered later, from the serve loop */

static int find_stream(int fd)
{
	for (int i = 0; i < n_streams; i++)
		if (streams[i].fd == fd)
			return i;
	return -1;
}

static void op_stream(uint32_t id)
{
	int fd = get_int(A_FD, -1);
	if (fcntl(fd, F_GETFD) < 0) {
		put_result(-1);
		return;
	}
	if (find_stream(fd) >= 0 || n_streams == MAX_STREAMS) {
		put_error(n_streams == MAX_STREAMS ? "already %d streams" : "fd %d is already streamed",
			  n_streams == MAX_STREAMS ? MAX_STREAMS : fd);
		return;
	}
	streams[n_streams].fd = fd;
	streams[n_streams].id = id;
	streams[n_streams++].size = recv_size();
	put_result(0);
}

/* (With nothing of the current reply built yet: a deferred UNSTREAM is answered here.) */
static void stream_remove(int i)
{
	if (streams[i].quiet_ns) {
		put_result(0);
		send_frame(KIND_REPLY, streams[i].unstream_id);
	}
	streams[i] = streams[--n_streams];
}

static void op_unstream(uint32_t id)
{
	int i = find_stream(get_int(A_FD, -1));
	int64_t quiet_ms = get_int(A_TIMEOUT_MS, 0);
	if (i >= 0 && quiet_ms > 0 && !streams[i].quiet_ns) {
		streams[i].unstream_id = id;
		streams[i].quiet_ns = quiet_ms * 1000000;
		streams[i].last_ns = t_start;
		reply_deferred = 1;
		return;
	}
	if (i >= 0)
		stream_remove(i);
	put_result(i >= 0 ? 0 : (errno = ENOENT, -1));
}

/* The poll timeout (ms) until the first quiet window ends, -1 if none is running. */
static int quiet_timeout(void)
{
	int64_t now = now_ns(), soonest = -1;
	for (int i = 0; i < n_streams; i++)
		if (streams[i].quiet_ns) {
			int64_t left = streams[i].last_ns + streams[i].quiet_ns - now;
			if (soonest < 0 || left < soonest)
				soonest = left > 0 ? left : 0;
		}
	return soonest < 0 ? -1 : (int)((soonest + 999999) / 1000000);
}

/* Streams whose quiet window has passed end, and their UNSTREAM is answered. */
static void end_quiet_streams(void)
{
	int64_t now = now_ns();
	for (int i = n_streams - 1; i >= 0; i--)
		if (streams[i].quiet_ns && now >= streams[i].last_ns + streams[i].quiet_ns) {
			t_start = now;
			stream_remove(i);
		}
}

static void stream_event(int i)
{
	t_start = now_ns();
	ssize_t r = recv_into_reply(streams[i].fd, MSG_DONTWAIT, streams[i].size);
	if (r == -EAGAIN) {  /* woken for nothing: no event */
		out.len = 0;
		return;
	}
	send_frame(KIND_EVENT, streams[i].id);
	streams[i].last_ns = now_ns();
	if (r == -EBADF)
		stream_remove(i);
}

/* At each time of the schedule (offsets from t_start), sleep until it; with PAUSE, then stop the
 * machine (see stop_machine).  The host acts on the stopped machine and continues it; with the
 * clock stopped meanwhile, "resumed" is a few instructions after "reached". */
static void op_at(void)
{
	size_t n = attr[A_SCHEDULE].len / 8;
	int pause = get_int(A_PAUSE, 0);
	if (pause && ioperm(PVPANIC_PORT, 1, 1) < 0) {
		put_result(-1);
		return;
	}
	int64_t *times = xrealloc(NULL, 2 * (n ? n : 1) * sizeof(int64_t));
	for (size_t i = 0; i < n; i++) {
		int64_t offset, at;
		memcpy(&offset, attr[A_SCHEDULE].p + 8 * i, 8);
		at = t_start + offset;
		struct timespec ts = { at / 1000000000, at % 1000000000 };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		times[2 * i] = now_ns();
		if (pause)
			stop_machine();
		times[2 * i + 1] = now_ns();
	}
	put_result(n);
	put_bytes(A_TIMES, times, 2 * n * sizeof(int64_t));
	free(times);
}

static void op_close(void)
{
	int fd = get_int(A_FD, -1), i = find_stream(fd);
	if (i >= 0)
		stream_remove(i);
	put_result(close(fd));
}

/* Run a shell command with stdout and stderr captured; killed (whole process group) at the
 * deadline so a stuck command cannot wedge the agent. */
/* The command's output channel: a pipe, or with PTY a pseudo-terminal, on which stdio is
 * line-buffered as on a person's terminal (monitors like nl-monitor print as events come). */
static int output_channel(int fds[2])
{
	if (!get_int(A_PTY, 0))
		return pipe2(fds, O_CLOEXEC);
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
		return -1;
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		return -1;
	struct termios t;
	if (tcgetattr(slave, &t) == 0) {
		t.c_oflag &= ~ONLCR; /* keep the program's "\n" as it wrote it */
		tcsetattr(slave, TCSANOW, &t);
	}
	fds[0] = master;
	fds[1] = slave;
	return 0;
}

static void op_run(void)
{
	int64_t deadline = now_ns() + get_int(A_TIMEOUT_MS, 10000) * 1000000;
	int pipefd[2];
	if (output_channel(pipefd) < 0) {
		put_result(-1);
		return;
	}
	char *cmd = get_str(A_CMD);
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		if (has(A_UID)) {
			gid_t g = getegid();
			uid_t u = geteuid();
			if (setresgid(g, g, g) || setresuid(u, u, u))
				_exit(126);
		}
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	free(cmd);
	close(pipefd[1]);
	if (pid < 0) {
		close(pipefd[0]);
		put_result(-1);
		return;
	}
	char *output = NULL;
	size_t len = 0;
	int timed_out = 0;
	for (;;) {
		int64_t left = (deadline - now_ns()) / 1000000;
		struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
		if (left <= 0 || poll(&p, 1, left) == 0) {
			timed_out = 1;
			kill(-pid, SIGKILL);
			break;
		}
		char chunk[4096];
		ssize_t r = read(pipefd[0], chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) /* EOF, or EIO from a pty whose last holder closed it */
			break;
		if (len + r <= MAX_OUTPUT) {
			output = xrealloc(output, len + r);
			memcpy(output + len, chunk, r);
			len += r;
		}
	}
	close(pipefd[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	put_result(0);
	put_int(A_TIMED_OUT, timed_out);
	put_int(A_STATUS, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	put_int(A_SIGNAL, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	put_bytes(A_OUTPUT, output ? output : "", len);
	free(output);
}

static void op_read_file(void)
{
	char *path = get_str(A_PATH);
	size_t max = get_int(A_MAXLEN, MAX_OUTPUT);
	if (max > MAX_OUTPUT)
		max = MAX_OUTPUT;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0) {
		put_result(-1);
		return;
	}
	char *buf = xrealloc(NULL, max + 1);
	size_t len = 0;
	ssize_t r = 0;
	while (len < max && ((r = read(fd, buf + len, max - len)) > 0 || (r < 0 && errno == EINTR)))
		if (r > 0)
			len += r;
	int e = errno;
	close(fd);
	errno = e;
	put_result(r < 0 ? -1 : (long)len);
	put_bytes(A_DATA, buf, len);
	free(buf);
}

/* Run one request as another user: dropping the effective uid from 0 also clears the effective
 * capabilities, which is what netlink's permission checks (ns_capable) look at. */
static int become(int64_t uid, int64_t gid)
{
	return setresgid(-1, gid, -1) == 0 && setresuid(-1, uid, -1) == 0;
}

static void become_root(void)
{
	if (setresuid(-1, 0, -1) || setresgid(-1, 0, -1))
		die("cannot return to root");
}

/* Requests running in child processes: their replies arrive on pipes and are forwarded whole. */
#define MAX_BACKGROUND 16
static struct { pid_t pid; int fd; uint8_t *buf; size_t len; } bg[MAX_BACKGROUND];
static int is_background_child;

static void handle_request(uint32_t id, const uint8_t *payload, uint32_t len);

/* A reply to a HOLD request is out: stop until the host's next request (lock-step), so the
 * guest's clock does not run on while the host works out what to ask next. */
static void hold_after_reply(void)
{
	while (tcdrain(chan_out) < 0 && errno == EINTR)
		;
	stop_machine();
}

/* Fork a child that handles the request and writes its reply frame to a pipe. */
static void start_background(uint32_t id, const uint8_t *payload, uint32_t len)
{
	int slot = 0, p[2];
	while (slot < MAX_BACKGROUND && bg[slot].pid)
		slot++;
	if (slot == MAX_BACKGROUND || pipe2(p, O_CLOEXEC) < 0) {
		put_error("cannot start a background request (%d running)", slot);
		send_frame(KIND_REPLY, id);
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		chan_out = p[1];
		is_background_child = 1;
		handle_request(id, payload, len);
		_exit(0);
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		put_error("fork: %s", strerror(errno));
		send_frame(KIND_REPLY, id);
		return;
	}
	bg[slot].pid = pid;
	bg[slot].fd = p[0];
	bg[slot].len = 0;
}

/* Whether a child's reply frame says the machine stops after it (HELD): only then does the
 * parent, which forwards it, hold (a child that failed early or died sent no such reply). */
static int frame_held(const uint8_t *frame, size_t len)
{
	if (len < PROTO_HEADER_SIZE || len - PROTO_HEADER_SIZE < get32(frame + 12))
		return 0;
	return !parse_attrs(frame + PROTO_HEADER_SIZE, get32(frame + 12)) && has(A_HELD);
}

/* A background child wrote to its pipe: collect, and at EOF forward the frame and reap it. */
static void collect_background(int slot)
{
	uint8_t chunk[65536];
	ssize_t r = read(bg[slot].fd, chunk, sizeof(chunk));
	if (r > 0) {
		bg[slot].buf = xrealloc(bg[slot].buf, bg[slot].len + r);
		memcpy(bg[slot].buf + bg[slot].len, chunk, r);
		bg[slot].len += r;
		return;
	}
	if (r < 0 && errno == EINTR)
		return;
	write_all(bg[slot].buf, bg[slot].len);
	close(bg[slot].fd);
	while (waitpid(bg[slot].pid, NULL, 0) < 0 && errno == EINTR)
		;
	bg[slot].pid = 0;
	int held = frame_held(bg[slot].buf, bg[slot].len);
	bg[slot].len = 0;
	if (held)
		hold_after_reply();
}

static void handle_request(uint32_t id, const uint8_t *payload, uint32_t len)
{
	const char *err = parse_attrs(payload, len);
	if (!err && get_int(A_BACKGROUND, 0) && !is_background_child) {
		start_background(id, payload, len);
		return;
	}
	t_start = now_ns();
	int op = get_int(A_OP, 0);
	int as_user = !err && has(A_UID);
	if (as_user && !become(get_int(A_UID, 0), get_int(A_GID, get_int(A_UID, 0)))) {
		put_error("cannot switch to uid %lld: %s", (long long)get_int(A_UID, 0), strerror(errno));
		become_root();
		send_frame(KIND_REPLY, id);
		return;
	}
	if (err)
		put_error("malformed request: %s", err);
	else if (!has(A_OP))
		put_error("request has no OP attribute");
	else if ((op == OP_RUN && !has(A_CMD)) || (op == OP_READ_FILE && !has(A_PATH)))
		put_error("op %d is missing its CMD/PATH attribute", op);
	else
		switch (op) {
		case OP_PING: op_ping(); break;
		case OP_SOCKET: op_socket(); break;
		case OP_SETSOCKOPT: op_setsockopt(); break;
		case OP_GETSOCKOPT: op_getsockopt(); break;
		case OP_BIND:
		case OP_CONNECT: op_bind_connect(op); break;
		case OP_GETSOCKNAME: op_getsockname(); break;
		case OP_SENDMSG: op_sendmsg(); break;
		case OP_RECVMSG: op_recvmsg(); break;
		case OP_CLOSE: op_close(); break;
		case OP_RUN: op_run(); break;
		case OP_READ_FILE: op_read_file(); break;
		case OP_STREAM: op_stream(id); break;
		case OP_UNSTREAM: op_unstream(id); break;
		case OP_AT: op_at(); break;
		default: put_error("unknown op %d", op);
		}
	if (as_user)
		become_root();
	if (reply_deferred) {
		reply_deferred = 0;
		return;
	}
	/* a background child's HELD reply is held by the parent, once it has forwarded it */
	int hold = !err && can_hold && get_int(A_HOLD, 0);
	if (hold)
		put_int(A_HELD, 1);
	send_frame(KIND_REPLY, id);
	if (hold && !is_background_child)
		hold_after_reply();
}

/* ---- the channel: frames in, resynchronising on the magic after garbage ---- */

static void report_garbage(uint64_t offset, const char *what)
{
	put_error("%s at stream offset %llu", what, (unsigned long long)offset);
	send_frame(KIND_ERROR, 0);
}

static void serve(void)
{
	size_t cap = PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD, len = 0;
	uint8_t *buf = xrealloc(NULL, cap);
	uint64_t offset = 0; /* stream offset of buf[0] */
	for (;;) {
		struct pollfd fds[1 + MAX_BACKGROUND + MAX_STREAMS] = { { .fd = chan_in, .events = POLLIN } };
		int slots[1 + MAX_BACKGROUND], n = 1;
		for (int i = 0; i < MAX_BACKGROUND; i++)
			if (bg[i].pid) {
				fds[n].fd = bg[i].fd;
				fds[n].events = POLLIN;
				slots[n++] = i;
			}
		int first_stream = n, streamed = n_streams;
		for (int i = 0; i < streamed; i++) {
			fds[n].fd = streams[i].fd;
			fds[n++].events = POLLIN;
		}
		if (poll(fds, n, quiet_timeout()) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (int i = 1; i < first_stream; i++)
			if (fds[i].revents)
				collect_background(slots[i]);
		for (int i = streamed - 1; i >= 0; i--)  /* backwards: removal moves the last one */
			if (fds[first_stream + i].revents)
				stream_event(i);
		end_quiet_streams();
		if (!fds[0].revents)
			continue;
		ssize_t r = read(chan_in, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			fprintf(stderr, "agent: channel closed\n");
			exit(1);
		}
		if (r < 0)
			die("read from channel");
		len += r;
		for (;;) {
			size_t skip = 0;
			while (skip < len && (len - skip < 4 ? memcmp(buf + skip, PROTO_MAGIC, len - skip)
							     : memcmp(buf + skip, PROTO_MAGIC, 4)))
				skip++;
			if (skip) {
				report_garbage(offset, "garbage before a frame");
				memmove(buf, buf + skip, len - skip);
				len -= skip;
				offset += skip;
			}
			if (len < PROTO_HEADER_SIZE)
				break;
			uint32_t id = get32(buf + 8), plen = get32(buf + 12), crc = get32(buf + 16);
			int bad = buf[4] != PROTO_VERSION || buf[5] != KIND_REQUEST || plen > PROTO_MAX_PAYLOAD;
			if (!bad && len < PROTO_HEADER_SIZE + plen)
				break;
			if (!bad) {
				put32(buf + 16, 0);
				bad = crc32_update(crc32_update(0, buf, PROTO_HEADER_SIZE), buf + PROTO_HEADER_SIZE,
						   plen) != crc;
				put32(buf + 16, crc);
			}
			size_t used = 1;
			if (bad)
				report_garbage(offset, "bad frame header or CRC");
			else {
				handle_request(id, buf + PROTO_HEADER_SIZE, plen);
				used = PROTO_HEADER_SIZE + plen;
			}
			memmove(buf, buf + used, len - used);
			len -= used;
			offset += used;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: agent CHANNEL  (a tty, or - for stdin and stdout)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[1], "-")) {
		chan_in = chan_out = open(argv[1], O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (chan_in < 0)
			die(argv[1]);
	} else {
		chan_in = 0;
		chan_out = 1;
	}
	struct termios t;
	if (tcgetattr(chan_in, &t) == 0) {
		cfmakeraw(&t);
		t.c_cflag |= CLOCAL | CREAD;
		t.c_cflag &= ~CRTSCTS;
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		if (tcsetattr(chan_in, TCSANOW, &t) < 0)
			die("tcsetattr");
		tcflush(chan_in, TCIOFLUSH);
	}
	if (strcmp(argv[1], "-"))
		can_hold = ioperm(PVPANIC_PORT, 1, 1) == 0;
	op_ping();
	send_frame(KIND_HELLO, 0);
	serve();
	return 0;
}
