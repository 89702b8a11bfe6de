package flow

// The generated bindings are committed; `make generate` rebuilds them with
// clang and CI fails when a rebuild changes them. Unlike capture's, the object
// is stripped of DWARF (BTF and its line info stay): the kernel types this
// object reads through BTF would otherwise add some 680 KB of debug info to
// the agent binary.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type flow_key -type flow_agg -type flow_hist -type flow_sock -type live_entry -type origin -type member -type bucket_args -type key_args -type payload_args -type skein_event -type trace_filter flow flow.c -- -I../include -mcpu=v3
