package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/agent/admin"
)

type logsOpts struct {
	workload, trace, status, since, until string
	limit                                 int
}

func newLogsCmd(o *options) *cobra.Command {
	var l logsOpts
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Query this node's access log: requests and TCP connections by workload, trace id, status, time",
		Long: `logs queries the node-local access-log store the agent keeps (--accesslog-dir): one line
per request or TCP connection that its filter kept (failures always, then the configured
status classes and sample). The store survives the pods that produced the lines and agent
restarts, within its size and age caps. The newest matching lines are shown, oldest first.`,
		Example: `  agentctl logs --workload shop/client --since 10m
  agentctl logs --trace 4bf92f3577b34da6a3ce929d0e0e4736
  agentctl logs --status 5xx --limit 20 -o wide
  agentctl logs --status failed --since 2026-11-25T12:00:00Z --until 2026-11-25T13:00:00Z -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var logs admin.Logs
			if err := o.get(cmd.Context(), admin.APIVersion+"/logs?"+l.values().Encode(), &logs); err != nil {
				return err
			}
			return o.print(logs, func(w io.Writer) error {
				return renderLogs(w, logs, o.output == "wide", time.Local)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&l.workload, "workload", "w", "", "only lines whose source or destination is this workload or pod: namespace/name, or name")
	f.StringVar(&l.trace, "trace", "", "only lines of this trace id")
	f.StringVar(&l.status, "status", "", "only this status class: 2xx, 3xx, 4xx, 5xx, or failed (5xx or a response flag, TCP included)")
	f.StringVar(&l.since, "since", "", "only lines that started since then: a duration back from now (10m, 2h) or an RFC 3339 time")
	f.StringVar(&l.until, "until", "", "only lines that started until then: a duration back from now or an RFC 3339 time")
	f.IntVar(&l.limit, "limit", 100, "show at most this many lines, the newest (at most 10000)")
	_ = cmd.RegisterFlagCompletionFunc("status", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"2xx", "3xx", "4xx", "5xx", "failed"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// values is the query string of GET /v1/logs.
func (l logsOpts) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"workload": l.workload, "trace": l.trace, "status": l.status, "since": l.since, "until": l.until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	v.Set("limit", strconv.Itoa(l.limit))
	return v
}

// renderLogs prints one row per line, times in loc; wide adds the route,
// upstream, security, bytes and request id.
func renderLogs(w io.Writer, logs admin.Logs, wide bool, loc *time.Location) error {
	if !logs.Enabled {
		fmt.Fprintln(w, "This agent keeps no access log (started with --accesslog-dir \"\").")
		return nil
	}
	if len(logs.Entries) == 0 {
		fmt.Fprintf(w, "No access-log lines match (%d read in %s).\n", logs.Scanned, logs.Dir)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "TIME\tREPORTER\tSOURCE -> DESTINATION\tREQUEST\tCODE\tFLAGS\tDURATION\tTRACE"
	if wide {
		head += "\tROUTE\tUPSTREAM\tSECURITY\tBYTES IN/OUT\tREQUEST ID"
	}
	fmt.Fprintln(tw, head)
	for _, e := range logs.Entries {
		request := e.Method + " " + e.Authority + e.Path
		if e.Protocol == "tcp" {
			request = "TCP " + e.OriginalDst
		}
		code := "-"
		if e.ResponseCode != 0 {
			code = strconv.Itoa(e.ResponseCode)
		}
		if e.GRPCStatus != "" {
			code += " grpc=" + e.GRPCStatus
		}
		dst := workloadName(e.DestinationNamespace, e.DestinationWorkload)
		if e.DestinationWorkload == "" && e.DestinationService != "" {
			dst = e.DestinationService
		}
		fmt.Fprintf(tw, "%s\t%s\t%s -> %s\t%s\t%s\t%s\t%s\t%s",
			e.Start.In(loc).Format("2006-01-02 15:04:05.000"), e.Reporter,
			workloadName(e.SourceNamespace, e.SourceWorkload), dst, request, code,
			orDash(e.ResponseFlags, ""),
			time.Duration(e.DurationMS*float64(time.Millisecond)).Round(time.Microsecond), orDash(e.TraceID, ""))
		if wide {
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%d/%d\t%s", orDash(e.Route, ""), orDash(e.UpstreamHost, ""),
				orDash(e.ConnectionSecurityPolicy, ""), e.BytesReceived, e.BytesSent,
				orDash(e.RequestID, ""))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if logs.Truncated {
		fmt.Fprintf(w, "-- the newest %d lines; more match: narrow the query or raise --limit\n", len(logs.Entries))
	}
	if logs.Corrupt > 0 {
		fmt.Fprintf(w, "-- skipped %d unreadable line(s) of the store\n", logs.Corrupt)
	}
	return nil
}

func workloadName(ns, name string) string {
	switch {
	case name == "":
		return "-"
	case ns == "":
		return name
	}
	return ns + "/" + name
}
