//go:build linux

package agent

import (
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/agent/admin"
)

var _ admin.Backend = (*Agent)(nil)

// Status implements admin.Backend.
func (a *Agent) Status() admin.Status {
	st := admin.Status{
		Version:    a.cfg.Version,
		Commit:     a.cfg.Commit,
		Node:       a.cfg.NodeName,
		StartTime:  a.start,
		Kernel:     kernelRelease(),
		Ready:      a.readyErr() == nil,
		Mode:       "PERMISSIVE",
		FailMode:   "open",
		CgroupRoot: a.cgroupRoot,
		PinPath:    a.pinPath,
	}
	if a.cfg.FailClosed {
		st.FailMode = "closed"
	}
	if a.cfg.ProxyAddr4.IsValid() {
		st.ProxyAddress = append(st.ProxyAddress, a.cfg.ProxyAddr4.String())
	}
	if a.cfg.ProxyAddr6.IsValid() {
		st.ProxyAddress = append(st.ProxyAddress, a.cfg.ProxyAddr6.String())
	}
	for _, f := range a.features {
		st.Features = append(st.Features, admin.Feature{Name: f.Name, Available: f.Available, Required: f.Required, Detail: f.Detail})
	}
	if a.datapath != nil {
		_, st.ProxyListening = a.datapath.ListenerCookie()
		for _, p := range a.datapath.Programs() {
			st.Programs = append(st.Programs, admin.Program{Name: p.Name, ID: uint32(p.ID), LinkID: uint32(p.LinkID), Pinned: p.Pinned})
		}
		st.Maps = mapStatus(a.datapath.Maps())
		if v, err := a.datapath.Verdicts(); err == nil {
			st.Capture = map[string]uint64{}
			for k, n := range v {
				st.Capture[k.String()] = n
			}
		}
	}
	a.cfgMu.Lock()
	st.Config = a.cfgStat
	a.cfgMu.Unlock()
	if a.proxy != nil {
		s := a.proxy.Stats()
		st.Proxy = admin.ProxyStats{Accepted: s.Accepted, Active: s.Active, NotCaptured: s.NotCaptured, Forwarded: s.Forwarded,
			Failed: s.Failed, HTTPConns: s.HTTPConns, Requests: s.Requests, RequestErrors: s.RequestErrors}
	}
	return st
}

// Services implements admin.Backend.
func (a *Agent) Services() []admin.Service { return servicesView(a.state.Load()) }

// Routes implements admin.Backend.
func (a *Agent) Routes() admin.Routes { return routesView(a.state.Load()) }

// Endpoints implements admin.Backend.
func (a *Agent) Endpoints() []admin.ServiceEndpoints {
	if a.proxy == nil {
		return nil
	}
	return endpointsView(a.state.Load(), a.proxy.Endpoints())
}

// Workloads implements admin.Backend.
func (a *Agent) Workloads() []admin.Workload {
	return a.state.Load().local
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}
