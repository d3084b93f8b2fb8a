/* libxdpstack.so: runs an unmodified program's TCP and UDP sockets on the
 * userstack of an interface that `xdpstack attach` serves.
 *
 * The program keeps real kernel descriptors. A socket that binds to,
 * listens on or connects to an address the userstack serves is replaced
 * (dup3 over the same number) by one end of a Unix socket pair whose
 * other end the daemon joins to a userstack session; protocol.h says
 * how. read/write/poll/epoll/sendfile/fork/exec then keep their meaning
 * without being intercepted, except for UDP, whose datagrams carry their
 * peer's address in a small header. Everything else stays with libc.
 *
 * Environment: XDPSTACK_SOCKET (or XDPSTACK_IFACE), XDPSTACK_NAMESPACE,
 * XDPSTACK_SECRET, XDPSTACK_SCOPE, XDPSTACK_PROCNAMES, XDPSTACK_DEBUG,
 * XDPSTACK_WILDCARD; see the README.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocol.h"

_Static_assert(sizeof(struct xs_addr) == 20, "xs_addr");
_Static_assert(sizeof(struct xs_request) == 576, "xs_request");
_Static_assert(sizeof(struct xs_reply) == 284, "xs_reply");
_Static_assert(sizeof(struct xs_name) == 60, "xs_name");

#define EXPORT __attribute__((visibility("default")))

/* libc's own functions. */
static int (*libc_socket)(int, int, int);
static int (*libc_bind)(int, const struct sockaddr *, socklen_t);
static int (*libc_listen)(int, int);
static int (*libc_accept)(int, struct sockaddr *, socklen_t *);
static int (*libc_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*libc_connect)(int, const struct sockaddr *, socklen_t);
static int (*libc_getsockname)(int, struct sockaddr *, socklen_t *);
static int (*libc_getpeername)(int, struct sockaddr *, socklen_t *);
static int (*libc_setsockopt)(int, int, int, const void *, socklen_t);
static int (*libc_getsockopt)(int, int, int, void *, socklen_t *);
static int (*libc_close)(int);
static int (*libc_close_range)(unsigned, unsigned, int);
static void (*libc_closefrom)(int);
static int (*libc_dup)(int);
static int (*libc_dup2)(int, int);
static int (*libc_dup3)(int, int, int);
static int (*libc_fcntl)(int, int, ...);
static ssize_t (*libc_read)(int, void *, size_t);
static ssize_t (*libc_write)(int, const void *, size_t);
static ssize_t (*libc_readv)(int, const struct iovec *, int);
static ssize_t (*libc_writev)(int, const struct iovec *, int);
static ssize_t (*libc_recv)(int, void *, size_t, int);
static ssize_t (*libc_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*libc_recvmsg)(int, struct msghdr *, int);
static int (*libc_recvmmsg)(int, struct mmsghdr *, unsigned, int, struct timespec *);
static ssize_t (*libc_send)(int, const void *, size_t, int);
static ssize_t (*libc_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*libc_sendmsg)(int, const struct msghdr *, int);
static int (*libc_sendmmsg)(int, struct mmsghdr *, unsigned, int);

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void resolve(void)
{
#define LIBC(name) libc_##name = dlsym(RTLD_NEXT, #name)
	LIBC(socket); LIBC(bind); LIBC(listen); LIBC(accept); LIBC(accept4);
	LIBC(connect); LIBC(getsockname); LIBC(getpeername); LIBC(setsockopt);
	LIBC(getsockopt); LIBC(close); LIBC(close_range); LIBC(closefrom);
	LIBC(dup); LIBC(dup2); LIBC(dup3); LIBC(fcntl); LIBC(read); LIBC(write);
	LIBC(readv); LIBC(writev); LIBC(recv); LIBC(recvfrom); LIBC(recvmsg);
	LIBC(recvmmsg); LIBC(send); LIBC(sendto); LIBC(sendmsg); LIBC(sendmmsg);
#undef LIBC
}

#define RESOLVE() pthread_once(&resolved, resolve)

/* What the library knows of a descriptor. Entries follow dup and close;
 * after exec, start() reads them back from the sockets' names. */
enum fd_kind {
	FD_NONE = 0,
	FD_INET = 'S',   /* a kernel TCP or UDP socket the program made */
	FD_BOUND = 'B',  /* FD_INET, bound to a userstack address: virtual until listen or connect */
	FD_LISTENER = XS_KIND_LISTENER,
	FD_UDP = XS_KIND_UDP,
};

struct fd_state {
	uint8_t kind;
	uint8_t family;  /* 4 or 6: the program's socket's */
	uint8_t proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	uint32_t id;     /* FD_UDP: the session */
	struct xs_addr local;  /* FD_BOUND: the address bound */
	struct xs_addr remote; /* FD_UDP: the connected peer, family 0 if none */
};

#define MAX_FDS 65536
static struct fd_state fds[MAX_FDS];
static pthread_mutex_t fds_mu = PTHREAD_MUTEX_INITIALIZER;

static struct fd_state *fd_at(int fd)
{
	return fd >= 0 && fd < MAX_FDS ? &fds[fd] : NULL;
}

static int kind_of(int fd)
{
	struct fd_state *s = fd_at(fd);
	return s ? s->kind : FD_NONE;
}

static void fd_forget(int fd)
{
	struct fd_state *s = fd_at(fd);
	if (s && s->kind) {
		pthread_mutex_lock(&fds_mu);
		memset(s, 0, sizeof(*s));
		pthread_mutex_unlock(&fds_mu);
	}
}

static void fd_copy(int from, int to)
{
	struct fd_state *a = fd_at(from), *b = fd_at(to);
	if (!b)
		return;
	pthread_mutex_lock(&fds_mu);
	if (a)
		*b = *a;
	else
		memset(b, 0, sizeof(*b));
	pthread_mutex_unlock(&fds_mu);
}

/* Settings, from the environment at load. */
static bool active;      /* this process uses the userstack */
static bool debug;
static bool wildcard_kernel;
static char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static char comm[32];

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "xdpstack[%d %s]: ", (int)getpid(), comm);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* Straight to the kernel: fd 2 may be anything, even one of ours. */
	syscall(SYS_write, 2, line, n);
}

#define DEBUG(...) do { if (debug) logf_(__VA_ARGS__); } while (0)

/* WHY puts a reason in parentheses after a decision, when there is one:
 * three arguments for "%s%s%s". */
#define WHY(msg) *(msg) ? " (" : "", (msg), *(msg) ? ")" : ""

/* Addresses. */

static bool to_xs(const struct sockaddr *sa, socklen_t len, struct xs_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const void *)sa;
		out->family = 4;
		out->port = in->sin_port;
		memcpy(out->addr, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		out->port = in6->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			out->family = 4;
			memcpy(out->addr, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			out->family = 6;
			memcpy(out->addr, &in6->sin6_addr, 16);
		}
		return true;
	}
	return false;
}

/* from_xs writes a as a socket of family (4 or 6) reports it, truncated
 * to *len as the kernel does, and sets *len to its whole size. */
static void from_xs(const struct xs_addr *a, int family, struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_storage ss;
	socklen_t n;
	memset(&ss, 0, sizeof(ss));
	if (family == 6) {
		struct sockaddr_in6 *in6 = (void *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = a->port;
		if (a->family == 4) {
			in6->sin6_addr.s6_addr[10] = 0xff;
			in6->sin6_addr.s6_addr[11] = 0xff;
			memcpy(&in6->sin6_addr.s6_addr[12], a->addr, 4);
		} else if (a->family == 6) {
			memcpy(&in6->sin6_addr, a->addr, 16);
		}
		n = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (void *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = a->port;
		if (a->family == 4)
			memcpy(&in->sin_addr, a->addr, 4);
		n = sizeof(*in);
	}
	if (sa && len) {
		memcpy(sa, &ss, *len < n ? *len : n);
		*len = n;
	}
}

static const char *xs_str(const struct xs_addr *a, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "*";
	if (a->family == 4)
		inet_ntop(AF_INET, a->addr, ip, sizeof(ip));
	else if (a->family == 6)
		inet_ntop(AF_INET6, a->addr, ip, sizeof(ip));
	snprintf(buf, size, a->family == 6 ? "[%s]:%u" : "%s:%u", ip, ntohs(a->port));
	return buf;
}

static bool is_unspecified(const struct xs_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->addr, zero, a->family == 4 ? 4 : 16) == 0;
}

/* stays_local says why an address is libc's without asking the daemon:
 * loopback, multicast and broadcast never go through an interface's
 * userstack. */
static const char *stays_local(const struct xs_addr *a)
{
	if (a->family == 4) {
		if (a->addr[0] == 127)
			return "loopback";
		if (a->addr[0] >= 224)
			return "multicast or broadcast";
		return NULL;
	}
	struct in6_addr in6;
	memcpy(&in6, a->addr, 16);
	if (IN6_IS_ADDR_LOOPBACK(&in6))
		return "loopback";
	if (IN6_IS_ADDR_MULTICAST(&in6))
		return "multicast";
	return NULL;
}

/* The names of the sockets the daemon hands over. */

static bool name_of(int fd, struct xs_name *name)
{
	struct sockaddr_un un;
	socklen_t len = sizeof(un);
	RESOLVE();
	if (libc_getsockname(fd, (struct sockaddr *)&un, &len) < 0 || un.sun_family != AF_UNIX)
		return false;
	if (len != offsetof(struct sockaddr_un, sun_path) + sizeof(*name))
		return false;
	memcpy(name, un.sun_path, sizeof(*name));
	return memcmp(name->magic, XS_NAME_MAGIC, XS_NAME_MAGIC_LEN) == 0;
}

/* The connection to the daemon: one per process, opened at first use. */

static pthread_mutex_t ctl_mu = PTHREAD_MUTEX_INITIALIZER;
static int ctl_fd = -1;
static dev_t ctl_dev;
static ino_t ctl_ino;
/* A refused hello: every call the userstack would take fails with it. */
static int refused;
static char refusal[256];
static bool said_no_daemon;

static void ctl_drop(void)
{
	if (ctl_fd >= 0)
		libc_close(ctl_fd);
	ctl_fd = -1;
}

/* ctl_alive: the program may have closed or replaced our descriptor
 * (closefrom, dup2 over it) behind the wrappers' back. */
static bool ctl_alive(void)
{
	struct stat st;
	if (ctl_fd < 0)
		return false;
	if (fstat(ctl_fd, &st) < 0 || st.st_dev != ctl_dev || st.st_ino != ctl_ino) {
		ctl_fd = -1; /* not ours to close any more */
		return false;
	}
	return true;
}

static int ctl_roundtrip(const struct xs_request *req, struct xs_reply *rep, int *fd_out);

static bool ctl_open(void)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	int fd = libc_socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	/* Out of the way of programs that expect their low descriptors. */
	int high = libc_fcntl(fd, F_DUPFD_CLOEXEC, 512);
	if (high >= 0) {
		libc_close(fd);
		fd = high;
	}
	memcpy(un.sun_path, socket_path, sizeof(un.sun_path));
	if (libc_connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
		int err = errno;
		libc_close(fd);
		if (!said_no_daemon) {
			logf_("no daemon at %s (%s): sockets stay with the kernel (is `xdpstack attach` running?)", socket_path, strerror(err));
			said_no_daemon = true;
		}
		return false;
	}
	struct stat st;
	fstat(fd, &st);
	ctl_fd = fd;
	ctl_dev = st.st_dev;
	ctl_ino = st.st_ino;

	struct xs_request hello = {.version = XS_PROTO_VERSION, .op = XS_HELLO};
	const char *fields[] = {getenv("XDPSTACK_NAMESPACE"), getenv("XDPSTACK_SECRET"), getenv("XDPSTACK_SCOPE"), comm};
	size_t off = 0;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const char *f = fields[i] ? fields[i] : "";
		size_t n = strlen(f);
		if (off + n + 1 > sizeof(hello.text)) {
			logf_("XDPSTACK_NAMESPACE, XDPSTACK_SECRET and XDPSTACK_SCOPE are too long (at most %zu bytes together)", sizeof(hello.text) - 8);
			ctl_drop();
			return false;
		}
		memcpy(hello.text + off, f, n + 1);
		off += n + 1;
	}
	struct xs_reply rep;
	if (ctl_roundtrip(&hello, &rep, NULL) < 0) {
		ctl_drop();
		return false;
	}
	refused = rep.status > 0 ? rep.status : 0;
	DEBUG("asking the daemon at %s", socket_path);
	if (refused) {
		snprintf(refusal, sizeof(refusal), "%s", rep.message);
		logf_("the daemon refused this program: %s", refusal);
	}
	return true;
}

static int ctl_roundtrip(const struct xs_request *req, struct xs_reply *rep, int *fd_out)
{
	struct iovec iov = {.iov_base = (void *)req, .iov_len = sizeof(*req)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd_out)
		*fd_out = -1;
	if (libc_sendmsg(ctl_fd, &msg, MSG_NOSIGNAL) != sizeof(*req))
		return -1;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	memset(rep, 0, sizeof(*rep));
	iov = (struct iovec){.iov_base = rep, .iov_len = sizeof(*rep)};
	msg = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
	ssize_t n;
	do
		n = libc_recvmsg(ctl_fd, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n != sizeof(*rep))
		return -1;
	rep->message[sizeof(rep->message) - 1] = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int fd;
			memcpy(&fd, CMSG_DATA(c), sizeof(fd));
			if (fd_out)
				*fd_out = fd;
			else
				libc_close(fd);
		}
	}
	return 0;
}

/* call asks the daemon; XS_DECLINED when there is none, so that a
 * program outlives its daemon on the kernel's sockets. With a refused
 * hello, what the daemon would take fails with the refusal. */
static int call(struct xs_request *req, struct xs_reply *rep, int *fd_out)
{
	int tries;
	req->version = XS_PROTO_VERSION;
	pthread_mutex_lock(&ctl_mu);
	for (tries = 0; tries < 2; tries++) {
		if (!ctl_alive() && !ctl_open())
			break;
		if (ctl_roundtrip(req, rep, fd_out) == 0)
			break;
		ctl_drop(); /* the daemon went away: once more, to a new one */
	}
	bool ok = tries < 2 && ctl_fd >= 0;
	pthread_mutex_unlock(&ctl_mu);
	if (!ok) {
		memset(rep, 0, sizeof(*rep));
		rep->status = XS_DECLINED;
		snprintf(rep->message, sizeof(rep->message), "no daemon");
	}
	return rep->status;
}

static void on_fork_prepare(void) { pthread_mutex_lock(&ctl_mu); }
static void on_fork_parent(void) { pthread_mutex_unlock(&ctl_mu); }

/* A child asks on a connection of its own: replies to two processes on
 * one connection would cross. */
static void on_fork_child(void)
{
	pthread_mutex_init(&ctl_mu, NULL);
	ctl_drop();
}

/* install puts the daemon's socket in place of fd, keeping fd's number,
 * its close-on-exec and its O_NONBLOCK. */
static int install(int fd, int from)
{
	int fdflags = libc_fcntl(fd, F_GETFD);
	int flflags = libc_fcntl(fd, F_GETFL);
	if (libc_dup3(from, fd, fdflags >= 0 && (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
		int err = errno;
		libc_close(from);
		errno = err;
		return -1;
	}
	libc_close(from);
	if (flflags >= 0 && (flflags & O_NONBLOCK))
		libc_fcntl(fd, F_SETFL, libc_fcntl(fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

static int int_opt(int fd, int level, int opt)
{
	int v = 0;
	socklen_t len = sizeof(v);
	return libc_getsockopt(fd, level, opt, &v, &len) == 0 && v;
}

/* flags_of reads the options the daemon honours off the kernel socket
 * that the program set them on. */
static uint32_t flags_of(int fd, const struct fd_state *s)
{
	uint32_t f = 0;
	int fl = libc_fcntl(fd, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		f |= XS_NONBLOCK;
	if (s->family == 6) {
		f |= XS_INET6;
		if (int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY))
			f |= XS_V6ONLY;
	}
	if (int_opt(fd, SOL_SOCKET, SO_REUSEADDR))
		f |= XS_REUSEADDR;
	if (int_opt(fd, SOL_SOCKET, SO_REUSEPORT))
		f |= XS_REUSEPORT;
	if (s->proto == IPPROTO_TCP && int_opt(fd, IPPROTO_TCP, TCP_NODELAY))
		f |= XS_NODELAY;
	return f;
}

static const char *proto_name(int proto) { return proto == IPPROTO_UDP ? "udp" : "tcp"; }

/* fail sets errno to a daemon's refusal, said on stderr when it is one
 * the program's own message would not explain. */
static int fail(int fd, const char *what, const struct xs_reply *rep)
{
	if (rep->status == EACCES || rep->status == EPERM)
		logf_("fd %d: %s: %s", fd, what, rep->message);
	else
		DEBUG("fd %d: %s: %s%s%s%s", fd, what, strerror(rep->status), WHY(rep->message));
	errno = rep->status;
	return -1;
}

static void start(void) __attribute__((constructor));
static void start(void)
{
	RESOLVE();
	int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = libc_read(fd, comm, sizeof(comm) - 1);
		libc_close(fd);
		if (n > 0 && comm[n - 1] == '\n')
			n--;
		comm[n > 0 ? n : 0] = 0;
	}
	const char *d = getenv("XDPSTACK_DEBUG");
	debug = d && *d && strcmp(d, "0") != 0;
	const char *w = getenv("XDPSTACK_WILDCARD");
	wildcard_kernel = w && strcmp(w, "kernel") == 0;
	const char *path = getenv("XDPSTACK_SOCKET");
	const char *iface = getenv("XDPSTACK_IFACE");
	if (path && *path)
		snprintf(socket_path, sizeof(socket_path), "%s", path);
	else if (iface && *iface)
		snprintf(socket_path, sizeof(socket_path), "/run/xdpstack/%s.preload", iface);
	else {
		logf_("neither XDPSTACK_SOCKET nor XDPSTACK_IFACE is set: sockets stay with the kernel");
		return;
	}
	const char *procs = getenv("XDPSTACK_PROCNAMES");
	if (procs && *procs) {
		bool listed = false;
		char list[1024];
		snprintf(list, sizeof(list), "%s", procs);
		for (char *save, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save))
			listed = listed || strcmp(p, comm) == 0;
		if (!listed) {
			DEBUG("not in XDPSTACK_PROCNAMES (%s): every socket stays with the kernel", procs);
			return;
		}
	}
	pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
	/* What an exec kept: the UDP sockets and listeners among the
	 * descriptors, known again by their names. */
	DIR *dir = opendir("/proc/self/fd");
	if (dir) {
		for (struct dirent *e; (e = readdir(dir));) {
			struct xs_name name;
			int n = atoi(e->d_name);
			if (e->d_name[0] == '.' || n == dirfd(dir) || !fd_at(n) || !name_of(n, &name))
				continue;
			if (name.kind == XS_KIND_UDP || name.kind == XS_KIND_LISTENER)
				fds[n] = (struct fd_state){.kind = name.kind, .family = name.family, .id = name.id,
							   .proto = name.kind == XS_KIND_UDP ? IPPROTO_UDP : IPPROTO_TCP,
							   .local = name.local, .remote = name.remote};
		}
		closedir(dir);
	}
	active = true;
}

/* socket */

EXPORT int socket(int domain, int type, int protocol)
{
	RESOLVE();
	int fd = libc_socket(domain, type, protocol);
	struct fd_state *s = fd_at(fd);
	if (!active || !s || (domain != AF_INET && domain != AF_INET6))
		return fd;
	int t = type & 0xf;
	if (t == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP))
		*s = (struct fd_state){.kind = FD_INET, .family = domain == AF_INET6 ? 6 : 4, .proto = IPPROTO_TCP};
	else if (t == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP))
		*s = (struct fd_state){.kind = FD_INET, .family = domain == AF_INET6 ? 6 : 4, .proto = IPPROTO_UDP};
	return fd;
}

/* bind */

EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	RESOLVE();
	struct fd_state *s = fd_at(fd);
	struct xs_addr local;
	char a[64];
	if (!s || s->kind == FD_NONE)
		return libc_bind(fd, sa, len);
	if (s->kind != FD_INET) {
		errno = EINVAL; /* bound already */
		return -1;
	}
	if (!to_xs(sa, len, &local))
		return libc_bind(fd, sa, len);
	const char *why = stays_local(&local);
	if (!why && wildcard_kernel && is_unspecified(&local))
		why = "a wildcard bind, and XDPSTACK_WILDCARD=kernel";
	if (why) {
		DEBUG("fd %d: bind %s/%s: kernel%s%s%s", fd, xs_str(&local, a, sizeof(a)), proto_name(s->proto), WHY(why));
		return libc_bind(fd, sa, len);
	}
	struct xs_request req = {.op = XS_BIND, .proto = s->proto, .flags = flags_of(fd, s), .local = local};
	struct xs_reply rep;
	int sock = -1;
	int st = call(&req, &rep, s->proto == IPPROTO_UDP ? &sock : NULL);
	if (st == XS_DECLINED) {
		DEBUG("fd %d: bind %s/%s: kernel%s%s%s", fd, xs_str(&local, a, sizeof(a)), proto_name(s->proto), WHY(rep.message));
		return libc_bind(fd, sa, len);
	}
	if (st == 0 && refused)
		st = rep.status = EACCES, snprintf(rep.message, sizeof(rep.message), "%s", refusal);
	if (st != 0) {
		if (sock >= 0)
			libc_close(sock);
		return fail(fd, "bind", &rep);
	}
	DEBUG("fd %d: bind %s/%s: userstack%s%s%s", fd, xs_str(&rep.local, a, sizeof(a)), proto_name(s->proto), WHY(rep.message));
	if (s->proto == IPPROTO_UDP) {
		if (sock < 0 || install(fd, sock) < 0) {
			errno = sock < 0 ? EPROTO : errno;
			return -1;
		}
		pthread_mutex_lock(&fds_mu);
		s->kind = FD_UDP;
		s->id = rep.id;
		s->local = rep.local;
		memset(&s->remote, 0, sizeof(s->remote));
		pthread_mutex_unlock(&fds_mu);
		return 0;
	}
	pthread_mutex_lock(&fds_mu);
	s->kind = FD_BOUND;
	s->local = rep.local;
	pthread_mutex_unlock(&fds_mu);
	return 0;
}

/* bind_kernel makes a virtual bind (FD_BOUND) the kernel socket's own,
 * for a socket that the userstack does not take after all. */
static int bind_kernel(int fd, struct fd_state *s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	from_xs(&s->local, s->family, (struct sockaddr *)&ss, &len);
	s->kind = FD_INET;
	return libc_bind(fd, (struct sockaddr *)&ss, len);
}

/* listen */

EXPORT int listen(int fd, int backlog)
{
	RESOLVE();
	struct fd_state *s = fd_at(fd);
	char a[64];
	if (!s || s->kind == FD_LISTENER)
		return s ? 0 : libc_listen(fd, backlog);
	if (s->kind != FD_BOUND)
		return libc_listen(fd, backlog);
	struct xs_request req = {.op = XS_LISTEN, .proto = IPPROTO_TCP, .flags = flags_of(fd, s),
				 .backlog = backlog > 0 ? (uint32_t)backlog : 0, .local = s->local};
	struct xs_reply rep;
	int sock;
	int st = call(&req, &rep, &sock);
	if (st == XS_DECLINED) {
		/* The daemon went away since the bind: the kernel's, then. */
		if (bind_kernel(fd, s) < 0)
			return -1;
		return libc_listen(fd, backlog);
	}
	if (st != 0) {
		if (sock >= 0)
			libc_close(sock);
		return fail(fd, "listen", &rep);
	}
	if (sock < 0 || install(fd, sock) < 0) {
		errno = sock < 0 ? EPROTO : errno;
		return -1;
	}
	DEBUG("fd %d: listen %s/tcp: userstack", fd, xs_str(&rep.local, a, sizeof(a)));
	pthread_mutex_lock(&fds_mu);
	s->kind = FD_LISTENER;
	s->local = rep.local;
	pthread_mutex_unlock(&fds_mu);
	return 0;
}

/* accept */

/* is_ours_kind says whether fd is one of the daemon's sockets of kind;
 * descriptors the library has not seen (passed from elsewhere) are
 * known by their names. */
static bool is_ours_kind(int fd, int kind, struct xs_name *name)
{
	int k = kind_of(fd);
	if (k == FD_INET || k == FD_BOUND)
		return false;
	if (k == kind && !name)
		return true;
	struct xs_name n;
	return name_of(fd, name ? name : &n) && (name ? name : &n)->kind == kind;
}

static int accept_ours(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	struct xs_accept acc;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = &acc, .iov_len = sizeof(acc)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
	ssize_t n = libc_recvmsg(fd, &msg, (flags & SOCK_CLOEXEC) ? MSG_CMSG_CLOEXEC : 0);
	if (n < 0)
		return -1;
	int conn = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(&conn, CMSG_DATA(c), sizeof(conn));
	if (n == 0 || n != sizeof(acc) || conn < 0) {
		/* The daemon is gone: a listener that no longer listens. */
		if (conn >= 0)
			libc_close(conn);
		errno = n == 0 ? EINVAL : EPROTO;
		return -1;
	}
	if (flags & SOCK_NONBLOCK)
		libc_fcntl(conn, F_SETFL, libc_fcntl(conn, F_GETFL) | O_NONBLOCK);
	fd_forget(conn);
	if (addr && addrlen)
		from_xs(&acc.name.remote, acc.name.family, addr, addrlen);
	if (debug) {
		char a[64], b[64];
		DEBUG("fd %d: accept %s from %s: fd %d", fd, xs_str(&acc.name.local, a, sizeof(a)), xs_str(&acc.name.remote, b, sizeof(b)), conn);
	}
	return conn;
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	RESOLVE();
	if (active && is_ours_kind(fd, XS_KIND_LISTENER, NULL))
		return accept_ours(fd, addr, addrlen, flags);
	int conn = libc_accept4(fd, addr, addrlen, flags);
	fd_forget(conn);
	return conn;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
	RESOLVE();
	if (active && is_ours_kind(fd, XS_KIND_LISTENER, NULL))
		return accept_ours(fd, addr, addrlen, 0);
	int conn = libc_accept(fd, addr, addrlen);
	fd_forget(conn);
	return conn;
}

/* connect */

static int connect_udp_session(int fd, struct fd_state *s, const struct sockaddr *sa, socklen_t len)
{
	struct xs_request req = {.op = XS_UDP_CONNECT, .proto = IPPROTO_UDP, .id = s->id};
	struct xs_reply rep;
	if (sa && sa->sa_family != AF_UNSPEC && !to_xs(sa, len, &req.remote)) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	int st = call(&req, &rep, NULL);
	if (st == XS_DECLINED) {
		errno = ECONNRESET; /* the daemon that held the socket is gone */
		return -1;
	}
	if (st != 0)
		return fail(fd, "connect", &rep);
	pthread_mutex_lock(&fds_mu);
	s->remote = req.remote;
	if (rep.local.family)
		s->local = rep.local; /* a connect picks the local address */
	pthread_mutex_unlock(&fds_mu);
	return 0;
}

static int sockerr(const struct xs_name *name);

/* connect_again answers a connect on a connection, as the kernel does to
 * programs that poll for writable and connect again to learn how the
 * first one ended (BIRD does): EISCONN once connected, EALREADY while
 * connecting, or the connect's error. */
static int connect_again(int fd, const struct xs_name *name)
{
	int err = sockerr(name);
	if (!err) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		err = poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) ? EISCONN : EALREADY;
	}
	errno = err;
	return -1;
}

EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	RESOLVE();
	struct fd_state *s = fd_at(fd);
	struct xs_addr remote;
	char a[64];
	if (s && s->kind == FD_UDP)
		return connect_udp_session(fd, s, sa, len);
	struct xs_name name;
	if (active && (!s || s->kind == FD_NONE) && name_of(fd, &name) && name.kind == XS_KIND_TCP)
		return connect_again(fd, &name);
	if (!s || s->kind == FD_NONE || s->kind == FD_LISTENER)
		return libc_connect(fd, sa, len);
	if (!to_xs(sa, len, &remote) || stays_local(&remote) || is_unspecified(&remote)) {
		/* Bound to a userstack address, connecting where the
		 * userstack does not go: the kernel's after all. */
		if (s->kind == FD_BOUND && bind_kernel(fd, s) < 0)
			return -1;
		return libc_connect(fd, sa, len);
	}
	struct xs_request req = {.op = XS_CONNECT, .proto = s->proto, .flags = flags_of(fd, s), .remote = remote};
	if (s->kind == FD_BOUND)
		req.local = s->local;
	struct xs_reply rep;
	int sock;
	int st = call(&req, &rep, &sock);
	if (st == XS_DECLINED) {
		DEBUG("fd %d: connect %s/%s: kernel%s%s%s", fd, xs_str(&remote, a, sizeof(a)), proto_name(s->proto), WHY(rep.message));
		if (s->kind == FD_BOUND && bind_kernel(fd, s) < 0)
			return -1;
		return libc_connect(fd, sa, len);
	}
	if (refused && (st == 0 || st == EINPROGRESS)) {
		if (sock >= 0)
			libc_close(sock);
		sock = -1;
		st = rep.status = EACCES;
		snprintf(rep.message, sizeof(rep.message), "%s", refusal);
	}
	if (st != 0 && st != EINPROGRESS) {
		if (sock >= 0)
			libc_close(sock);
		return fail(fd, "connect", &rep);
	}
	if (sock < 0 || install(fd, sock) < 0) {
		errno = sock < 0 ? EPROTO : errno;
		return -1;
	}
	DEBUG("fd %d: connect %s/%s: userstack%s%s%s", fd, xs_str(&remote, a, sizeof(a)), proto_name(s->proto), WHY(rep.message));
	pthread_mutex_lock(&fds_mu);
	if (s->proto == IPPROTO_UDP) {
		s->kind = FD_UDP;
		s->id = rep.id;
		s->local = rep.local;
		s->remote = remote;
	} else {
		memset(s, 0, sizeof(*s)); /* a connection: known by its name */
	}
	pthread_mutex_unlock(&fds_mu);
	if (st == EINPROGRESS) {
		errno = EINPROGRESS;
		return -1;
	}
	return 0;
}

/* getsockname, getpeername */

EXPORT int getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	RESOLVE();
	struct fd_state *s = fd_at(fd);
	if (s && (s->kind == FD_BOUND || s->kind == FD_UDP)) {
		from_xs(&s->local, s->family, sa, len);
		return 0;
	}
	struct sockaddr_storage ss;
	socklen_t n = sizeof(ss);
	if (libc_getsockname(fd, (struct sockaddr *)&ss, &n) < 0)
		return -1;
	struct xs_name name;
	if (active && ss.ss_family == AF_UNIX && name_of(fd, &name)) {
		from_xs(&name.local, name.family, sa, len);
		return 0;
	}
	if (sa && len) {
		memcpy(sa, &ss, *len < n ? *len : n);
		*len = n;
	}
	return 0;
}

EXPORT int getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
	RESOLVE();
	struct fd_state *s = fd_at(fd);
	if (s && s->kind == FD_BOUND) {
		errno = ENOTCONN;
		return -1;
	}
	if (s && s->kind == FD_UDP) {
		if (!s->remote.family) {
			errno = ENOTCONN;
			return -1;
		}
		from_xs(&s->remote, s->family, sa, len);
		return 0;
	}
	struct xs_name name;
	if (active && (!s || s->kind == FD_NONE) && name_of(fd, &name)) {
		if (name.kind != XS_KIND_TCP) {
			errno = ENOTCONN;
			return -1;
		}
		from_xs(&name.remote, name.family, sa, len);
		return 0;
	}
	return libc_getpeername(fd, sa, len);
}

/* setsockopt, getsockopt */

EXPORT int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	RESOLVE();
	int k = kind_of(fd);
	if (!active || k == FD_INET || k == FD_BOUND)
		return libc_setsockopt(fd, level, opt, val, len);
	int r = libc_setsockopt(fd, level, opt, val, len);
	if (r == 0)
		return 0;
	int err = errno;
	struct xs_name name;
	if (k == FD_NONE && !name_of(fd, &name)) {
		errno = err;
		return r;
	}
	/* TCP, IP and IPv6 options of a userstack socket: accepted; the
	 * README lists which matter and how. */
	DEBUG("fd %d: setsockopt level %d option %d: accepted without effect", fd, level, opt);
	return 0;
}

static int put_int(void *val, socklen_t *len, int v)
{
	if (!val || !len || *len < sizeof(int)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(val, &v, sizeof(v));
	*len = sizeof(v);
	return 0;
}

/* The TCP options a userstack connection reports: what a kernel TCP
 * socket on an Ethernet link would. */
#define USERSTACK_MSS 1448

static int sockerr(const struct xs_name *name)
{
	if (name->kind != XS_KIND_TCP)
		return 0;
	struct xs_request req = {.op = XS_SOCKERR, .proto = IPPROTO_TCP, .id = name->id};
	struct xs_reply rep;
	int st = call(&req, &rep, NULL);
	if (st == XS_DECLINED)
		return ECONNRESET; /* the daemon died, and the connection with it */
	return st > 0 ? st : 0;
}

EXPORT int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	RESOLVE();
	int k = kind_of(fd);
	if (!active || k == FD_INET || k == FD_BOUND)
		return libc_getsockopt(fd, level, opt, val, len);
	bool ask = level == IPPROTO_TCP || level == IPPROTO_IP || level == IPPROTO_IPV6 ||
		   (level == SOL_SOCKET && (opt == SO_DOMAIN || opt == SO_PROTOCOL || opt == SO_ERROR ||
					    opt == SO_ACCEPTCONN || opt == SO_TYPE));
	struct xs_name name;
	if (!ask || !name_of(fd, &name))
		return libc_getsockopt(fd, level, opt, val, len);
	if (level == SOL_SOCKET) {
		switch (opt) {
		case SO_DOMAIN:
			return put_int(val, len, name.family == 6 ? AF_INET6 : AF_INET);
		case SO_PROTOCOL:
			return put_int(val, len, name.kind == XS_KIND_UDP ? IPPROTO_UDP : IPPROTO_TCP);
		case SO_TYPE:
			return put_int(val, len, name.kind == XS_KIND_UDP ? SOCK_DGRAM : SOCK_STREAM);
		case SO_ACCEPTCONN:
			return put_int(val, len, name.kind == XS_KIND_LISTENER);
		case SO_ERROR:
			return put_int(val, len, sockerr(&name));
		}
	}
	if (level == IPPROTO_TCP && name.kind != XS_KIND_UDP) {
		switch (opt) {
		case TCP_MAXSEG:
			return put_int(val, len, USERSTACK_MSS);
		case TCP_INFO: {
			struct tcp_info ti;
			memset(&ti, 0, sizeof(ti));
			ti.tcpi_state = name.kind == XS_KIND_LISTENER ? 10 /* TCP_LISTEN */ : 1 /* TCP_ESTABLISHED */;
			ti.tcpi_snd_mss = ti.tcpi_rcv_mss = ti.tcpi_advmss = USERSTACK_MSS;
			if (!val || !len) {
				errno = EINVAL;
				return -1;
			}
			if (*len > sizeof(ti))
				*len = sizeof(ti);
			memcpy(val, &ti, *len);
			return 0;
		}
		case TCP_CONGESTION:
			errno = ENOPROTOOPT;
			return -1;
		}
	}
	if (level == IPPROTO_IP && opt == IP_OPTIONS) {
		if (len)
			*len = 0;
		return 0;
	}
	if (level == IPPROTO_IP && opt == IP_TTL)
		return put_int(val, len, 64);
	if (level == IPPROTO_IPV6 && opt == IPV6_UNICAST_HOPS)
		return put_int(val, len, 64);
	return put_int(val, len, 0);
}

/* close, dup */

static void forget_ctl(int fd)
{
	if (fd == ctl_fd && fd >= 0)
		ctl_fd = -1; /* closed by the program: reopened at the next call */
}

EXPORT int close(int fd)
{
	RESOLVE();
	forget_ctl(fd);
	fd_forget(fd);
	return libc_close(fd);
}

EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	RESOLVE();
	if (!(flags & CLOSE_RANGE_CLOEXEC)) {
		if (ctl_fd >= 0 && (unsigned)ctl_fd >= first && (unsigned)ctl_fd <= last)
			ctl_fd = -1;
		for (unsigned fd = first; fd <= last && fd < MAX_FDS; fd++)
			fd_forget(fd);
	}
	if (!libc_close_range)
		return syscall(SYS_close_range, first, last, flags);
	return libc_close_range(first, last, flags);
}

EXPORT void closefrom(int first)
{
	RESOLVE();
	if (ctl_fd >= first)
		ctl_fd = -1;
	for (int fd = first < 0 ? 0 : first; fd < MAX_FDS; fd++)
		fd_forget(fd);
	if (libc_closefrom)
		libc_closefrom(first);
	else
		syscall(SYS_close_range, first, ~0U, 0);
}

EXPORT int dup(int fd)
{
	RESOLVE();
	int n = libc_dup(fd);
	if (n >= 0)
		fd_copy(fd, n);
	return n;
}

EXPORT int dup2(int fd, int to)
{
	RESOLVE();
	if (fd != to)
		forget_ctl(to);
	int n = libc_dup2(fd, to);
	if (n >= 0 && fd != to)
		fd_copy(fd, n);
	return n;
}

EXPORT int dup3(int fd, int to, int flags)
{
	RESOLVE();
	forget_ctl(to);
	int n = libc_dup3(fd, to, flags);
	if (n >= 0)
		fd_copy(fd, n);
	return n;
}

static int fcntl_dup(int fd, int cmd, va_list ap)
{
	void *arg = va_arg(ap, void *);
	int n = libc_fcntl(fd, cmd, arg);
	if (n >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
		fd_copy(fd, n);
	return n;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	RESOLVE();
	va_list ap;
	va_start(ap, cmd);
	int n = fcntl_dup(fd, cmd, ap);
	va_end(ap);
	return n;
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	RESOLVE();
	va_list ap;
	va_start(ap, cmd);
	int n = fcntl_dup(fd, cmd, ap);
	va_end(ap);
	return n;
}

/* UDP: the header before every datagram. */

#define MAX_IOV 1024

static bool is_udp(int fd)
{
	return kind_of(fd) == FD_UDP;
}

/* udp_recv receives one datagram into iov, with its sender. EOF from
 * the daemon is an error: a UDP socket has no end of stream. */
static ssize_t udp_recv(int fd, const struct iovec *iov, int iovcnt, int flags, struct sockaddr *from, socklen_t *fromlen, int *msg_flags)
{
	struct iovec v[MAX_IOV + 1];
	struct xs_dgram h;
	if (iovcnt < 0 || iovcnt > MAX_IOV) {
		errno = EINVAL;
		return -1;
	}
	v[0] = (struct iovec){.iov_base = &h, .iov_len = sizeof(h)};
	memcpy(v + 1, iov, iovcnt * sizeof(*iov));
	struct msghdr msg = {.msg_iov = v, .msg_iovlen = iovcnt + 1};
	ssize_t n = libc_recvmsg(fd, &msg, flags & ~MSG_TRUNC);
	if (n < 0)
		return -1;
	if (n == 0) {
		errno = ECONNRESET;
		return -1;
	}
	if ((size_t)n < sizeof(h)) {
		errno = EPROTO;
		return -1;
	}
	if (from && fromlen)
		from_xs(&h.peer, fds[fd].family, from, fromlen);
	if (msg_flags)
		*msg_flags = msg.msg_flags;
	return n - sizeof(h);
}

static ssize_t udp_send(int fd, const struct iovec *iov, int iovcnt, int flags, const struct sockaddr *to, socklen_t tolen)
{
	struct iovec v[MAX_IOV + 1];
	struct xs_dgram h;
	memset(&h, 0, sizeof(h));
	if (iovcnt < 0 || iovcnt > MAX_IOV) {
		errno = EINVAL;
		return -1;
	}
	if (to && !to_xs(to, tolen, &h.peer)) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	if (!to && !fds[fd].remote.family) {
		errno = EDESTADDRREQ;
		return -1;
	}
	v[0] = (struct iovec){.iov_base = &h, .iov_len = sizeof(h)};
	memcpy(v + 1, iov, iovcnt * sizeof(*iov));
	struct msghdr msg = {.msg_iov = v, .msg_iovlen = iovcnt + 1};
	ssize_t n = libc_sendmsg(fd, &msg, flags | MSG_NOSIGNAL);
	if (n < 0) {
		if (errno == EPIPE)
			errno = ECONNRESET;
		return -1;
	}
	return n - sizeof(h);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_recvfrom(fd, buf, len, flags, from, fromlen);
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	return udp_recv(fd, &iov, 1, flags, from, fromlen, NULL);
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_recv(fd, buf, len, flags);
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	return udp_recv(fd, &iov, 1, flags, NULL, NULL, NULL);
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_read(fd, buf, len);
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	return udp_recv(fd, &iov, 1, 0, NULL, NULL, NULL);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_readv(fd, iov, iovcnt);
	return udp_recv(fd, iov, iovcnt, 0, NULL, NULL, NULL);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_recvmsg(fd, msg, flags);
	socklen_t namelen = msg->msg_namelen;
	int mflags = 0;
	ssize_t n = udp_recv(fd, msg->msg_iov, msg->msg_iovlen, flags, msg->msg_name, msg->msg_name ? &namelen : NULL, &mflags);
	if (n >= 0) {
		msg->msg_namelen = msg->msg_name ? namelen : 0;
		msg->msg_controllen = 0; /* no IP_PKTINFO and the like */
		msg->msg_flags = mflags;
	}
	return n;
}

EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *timeout)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_recvmmsg(fd, vec, vlen, flags, timeout);
	unsigned i;
	for (i = 0; i < vlen; i++) {
		ssize_t n = recvmsg(fd, &vec[i].msg_hdr, i ? flags | MSG_DONTWAIT : flags & ~MSG_WAITFORONE);
		if (n < 0)
			return i ? (int)i : -1;
		vec[i].msg_len = n;
	}
	return i;
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_sendto(fd, buf, len, flags, to, tolen);
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	return udp_send(fd, &iov, 1, flags, to, tolen);
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_send(fd, buf, len, flags);
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	return udp_send(fd, &iov, 1, flags, NULL, 0);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_write(fd, buf, len);
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	return udp_send(fd, &iov, 1, 0, NULL, 0);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_writev(fd, iov, iovcnt);
	return udp_send(fd, iov, iovcnt, 0, NULL, 0);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_sendmsg(fd, msg, flags);
	return udp_send(fd, msg->msg_iov, msg->msg_iovlen, flags, msg->msg_name, msg->msg_namelen);
}

EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags)
{
	RESOLVE();
	if (!is_udp(fd))
		return libc_sendmmsg(fd, vec, vlen, flags);
	unsigned i;
	for (i = 0; i < vlen; i++) {
		ssize_t n = sendmsg(fd, &vec[i].msg_hdr, flags);
		if (n < 0)
			return i ? (int)i : -1;
		vec[i].msg_len = n;
	}
	return i;
}

/* The fortified entry points that programs built with _FORTIFY_SOURCE
 * call instead of the plain ones. */

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		abort();
	return read(fd, buf, len);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		abort();
	return recv(fd, buf, len, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *from, socklen_t *fromlen)
{
	if (len > buflen)
		abort();
	return recvfrom(fd, buf, len, flags, from, fromlen);
}
