//go:build ignore

/* The trace event stream's maps, created once by the agent and shared by
 * every Skein BPF object (passed as map replacements): the ring buffer, the
 * kernel-side filter and the lost-event counter. This object has no
 * program; it exists so that the maps and the event layout come from
 * events.h, the one definition the programs use. */

#include "skein.h"
#include "events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const struct skein_event *unused_skein_event __attribute__((unused));
const struct trace_filter *unused_trace_filter __attribute__((unused));
