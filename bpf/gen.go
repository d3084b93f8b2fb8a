// Package bpf holds xdpstack's eBPF programs and their bpf2go bindings.
//
// The generated Go files and objects are committed, so building needs no
// clang; `make generate` rebuilds them with the pinned compiler.
package bpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -type xdp_reason -type counter -type listener_key -type listener_value -type local_addr_key -type local_addr_value -type local_addr_flags -type attach_info -type rule_key -type rule_value -type rule_shape -type rule_set -type rule_generation -type rule_info -type rule_slot -type rule_action -type rule_family -type sample_limits -type sample_settings -type sample_lease -type sample_state -type sample_meta -type sample_count -type psp_settings -type psp_spi_key -type psp_grant Xdp xdp.c -- -Iinclude
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -Wall -Werror -I/usr/include/x86_64-linux-gnu" Pass pass.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -Wall -Werror -I/usr/include/x86_64-linux-gnu" Drop drop.c
// The same program with three more reasons: the build that the upgrade
// test replaces a running one with, and the other way round.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -Wall -Werror -I/usr/include/x86_64-linux-gnu -DEXTRA_TEST_REASONS" -output-dir upgradetest -go-package upgradetest -no-global-types Xdp xdp.c -- -Iinclude
