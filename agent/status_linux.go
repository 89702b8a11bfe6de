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
		Mode:       a.cfg.Mode,
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
		st.StrictDrops, _, _ = a.datapath.StrictStats()
		if v, err := a.datapath.Verdicts(); err == nil {
			st.Capture = map[string]uint64{}
			for k, n := range v {
				st.Capture[k.String()] = n
			}
		}
	}
	if a.certs != nil {
		cs := &admin.CertSummary{Roots: len(a.certs.Bundle())}
		cs.Issued, cs.Failed = a.certs.Counters()
		for _, c := range a.certs.Status() {
			if c.NotAfter.IsZero() {
				cs.Missing++
				continue
			}
			cs.Count++
			if cs.NextExpiry.IsZero() || c.NotAfter.Before(cs.NextExpiry) {
				cs.NextExpiry = c.NotAfter
			}
		}
		st.Certs = cs
	}
	st.Flows = a.flowStatus()
	a.cfgMu.Lock()
	st.Config = a.cfgStat
	a.cfgMu.Unlock()
	if a.proxy != nil {
		s := a.proxy.Stats()
		st.Proxy = admin.ProxyStats{Accepted: s.Accepted, Active: s.Active, NotCaptured: s.NotCaptured, Forwarded: s.Forwarded,
			Failed: s.Failed, HTTPConns: s.HTTPConns, Requests: s.Requests, RequestErrors: s.RequestErrors,
			TunnelConns: s.TunnelConns, TunnelRefused: s.TunnelRefused, AuthzAllowed: s.AuthzAllowed, AuthzDenied: s.AuthzDenied}
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

// Certs implements admin.Backend.
func (a *Agent) Certs() admin.Certs {
	if a.certs == nil {
		return admin.Certs{}
	}
	out := admin.Certs{Enabled: true}
	for _, c := range a.certs.Status() {
		out.Certificates = append(out.Certificates, admin.Certificate{
			Identity: c.Identity, Serial: c.Serial, Issuer: c.Issuer,
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, RenewAt: c.RenewAt,
		})
	}
	for _, r := range a.certs.Bundle() {
		out.Roots = append(out.Roots, admin.Root{Subject: r.Subject.String(), Serial: r.SerialNumber.Text(16), NotAfter: r.NotAfter})
	}
	return out
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
