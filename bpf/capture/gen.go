package capture

// The generated bindings are committed; `make generate` rebuilds them with
// clang and CI fails when a rebuild changes them.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -no-strip -type capture_config -type member -type excluded_key -type dst_key -type dst_info -type origin -type conn_key -type decide_args -type strict_args -type skein_event -type trace_filter capture capture.c -- -I../include -mcpu=v3
