/* The protocol between libxdpstack.so (preloaded into a program) and the
 * daemon's preload server (package preload). Mirrored in ../protocol.go; the
 * two must change together (TestProtocolLayout checks the sizes).
 *
 * The library opens one SOCK_SEQPACKET Unix connection per process to
 * XDPSTACK_SOCKET (default /run/xdpstack/<XDPSTACK_IFACE>.preload), sends
 * XS_HELLO, then one xs_request per message and reads one xs_reply per
 * request; a reply carries at most one descriptor (SCM_RIGHTS). All
 * integers are in host byte order except xs_addr.port, which is in
 * network order as in a sockaddr.
 *
 * What the program holds is a real kernel descriptor: one end of a Unix
 * socket pair whose other end the daemon joins to a userstack session.
 * The daemon binds the program's end to an abstract name (struct
 * xs_name), so that getsockname/getpeername/accept work from the name
 * alone, also after dup, fork and exec, and also after the daemon died.
 */
#ifndef XDPSTACK_PRELOAD_PROTOCOL_H
#define XDPSTACK_PRELOAD_PROTOCOL_H

#include <stdint.h>

#define XS_PROTO_VERSION 1

enum xs_op {
	/* First message. text = "namespace\0secret\0scope\0procname\0";
	 * empty namespace: the default one; scope: "global" (default),
	 * "local" or "both". status EACCES (wrong secret, unknown
	 * namespace) with a message. */
	XS_HELLO = 1,
	/* Would the userstack take a bind of proto to local? TCP: no
	 * state is kept (the library remembers the address until listen or
	 * connect); the reply's local is what getsockname should say.
	 * UDP: binds now; the reply carries the socket (kind 'U').
	 * status XS_DECLINED: libc's. */
	XS_BIND = 2,
	/* TCP: listen on local (port 0: one is picked) with backlog; the
	 * reply carries the listener (kind 'L', SOCK_SEQPACKET). */
	XS_LISTEN = 3,
	/* TCP or UDP: connect to remote, from local when its family is not
	 * 0 (a bind before connect; port 0: any). XS_DECLINED when remote
	 * is not reached through the userstack. TCP with XS_NONBLOCK:
	 * status EINPROGRESS at once, with the socket, which turns writable
	 * when the handshake completes (see XS_SOCKERR); without it the
	 * reply comes after the handshake. UDP: at once. The reply's
	 * socket is kind 'T' (SOCK_STREAM) or 'U' (SOCK_SEQPACKET). */
	XS_CONNECT = 4,
	/* UDP: connect the session id (from the socket's name) to remote;
	 * remote family 0 disconnects (AF_UNSPEC). */
	XS_UDP_CONNECT = 5,
	/* The pending error of TCP session id (SO_ERROR), cleared as it is
	 * read: 0 while connecting or once connected. */
	XS_SOCKERR = 6,
};

/* The program's socket options the daemon honours. */
enum xs_flags {
	XS_NONBLOCK = 1 << 0,
	XS_V6ONLY = 1 << 1,  /* IPV6_V6ONLY was set on an AF_INET6 socket */
	XS_REUSEADDR = 1 << 2,
	XS_REUSEPORT = 1 << 3,
	XS_INET6 = 1 << 4,   /* the program's socket is AF_INET6 */
	XS_NODELAY = 1 << 5, /* TCP_NODELAY was set */
};

/* status XS_DECLINED: not the userstack's; libc does the call. */
#define XS_DECLINED (-1)

struct xs_addr {
	uint8_t family; /* 0 (none), 4 or 6 */
	uint8_t pad;
	uint16_t port;  /* network order */
	uint8_t addr[16]; /* the first 4 for IPv4 */
};

struct xs_request {
	uint32_t version; /* XS_PROTO_VERSION */
	uint32_t op;      /* enum xs_op */
	uint32_t proto;   /* 6 (TCP) or 17 (UDP) */
	uint32_t flags;   /* enum xs_flags */
	uint32_t backlog; /* XS_LISTEN */
	uint32_t id;      /* XS_UDP_CONNECT, XS_SOCKERR */
	struct xs_addr local;
	struct xs_addr remote;
	char text[512];   /* XS_HELLO */
};

struct xs_reply {
	int32_t status;   /* 0, XS_DECLINED, EINPROGRESS or a positive errno */
	uint32_t id;      /* the session's */
	struct xs_addr local; /* the address bound (the port picked) */
	/* Why, in one line: the library prints it on stderr with an error
	 * and in its debug log ("userstack: 10.0.0.1 is served by eth0"). */
	char message[256];
};

/* The abstract address of every socket the daemon hands over. */
#define XS_NAME_MAGIC "\0xdpstack/" /* 10 bytes, the first NUL: abstract */
#define XS_NAME_MAGIC_LEN 10

enum xs_kind {
	XS_KIND_LISTENER = 'L',   /* SOCK_SEQPACKET: one message per connection */
	XS_KIND_TCP = 'T',        /* SOCK_STREAM: the connection's bytes */
	/* SOCK_SEQPACKET, not SOCK_DGRAM: a datagram pair gives no EOF
	 * when the daemon dies, and a blocked recv would hang. */
	XS_KIND_UDP = 'U',        /* SOCK_SEQPACKET: xs_dgram + payload per record */
};

struct xs_name {
	char magic[XS_NAME_MAGIC_LEN];
	uint8_t kind;     /* enum xs_kind */
	uint8_t family;   /* 4 or 6: the program's socket's family (IPv4
	                   * peers of an AF_INET6 socket come v4-mapped) */
	uint32_t id;      /* the session, unique in the daemon */
	uint32_t instance; /* the daemon's, so names stay unique across restarts */
	struct xs_addr local;
	struct xs_addr remote; /* family 0 for listeners and unconnected UDP */
};

/* A listener delivers each connection as one message: this, with the
 * connection's socket (kind 'T') as SCM_RIGHTS. */
struct xs_accept {
	struct xs_name name;
};

/* Every datagram on a 'U' socket starts with this: from the daemon, the
 * sender; to the daemon, the destination (family 0: the connected
 * peer). */
struct xs_dgram {
	struct xs_addr peer;
};

#endif
