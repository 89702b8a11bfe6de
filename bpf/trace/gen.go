package trace

// The generated bindings are committed; `make generate` rebuilds them.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -no-strip -type skein_event -type trace_filter trace trace.c -- -I../include -mcpu=v3
