// Package preload serves the programs that run with libxdpstack.so
// preloaded (lib/, `xdpstack run`): over one SOCK_SEQPACKET Unix
// connection per process (the protocol of lib/protocol.h), it takes
// the TCP and UDP sockets the library hands over and joins each to a
// session of a Network, the userstack's for the daemon. The program
// holds one end of a Unix socket pair per socket, a real kernel
// descriptor; the server copies between the other end and the session.
package preload
