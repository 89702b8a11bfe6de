package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// nsHandle is a netlink handle working in a named network namespace,
// without moving any thread of the calling goroutine.
type nsHandle struct {
	*netlink.Handle
	ns netns.NsHandle
}

func openNS(name string) (*nsHandle, error) {
	ns, err := netns.GetFromPath(NetnsPath(name))
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return &nsHandle{Handle: h, ns: ns}, nil
}

func (h *nsHandle) Close() {
	h.Handle.Close()
	h.ns.Close()
}

func (h *nsHandle) up(name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find link %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set %s up: %w", name, err)
	}
	return l, nil
}

func (h *nsHandle) addAddr(l netlink.Link, p netip.Prefix) error {
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

func (h *nsHandle) addRoute(r *netlink.Route, what string) error {
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("add route %s: %w", what, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// setupUnderlay creates the underlay namespace with the bridge that joins
// the nodes. It has no address: it is a wire.
func setupUnderlay(name string) error {
	if err := createNetns(name); err != nil {
		return err
	}
	h, err := openNS(name)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.up("lo"); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s in %s: %w", bridgeName, name, err)
	}
	_, err = h.up(bridgeName)
	return err
}

// setupNode creates a node's namespace: forwarding on, reverse-path
// filtering off, the pods' gateway address on lo, ul0 on the underlay, and
// a route to every other node's pod CIDR. It gets no default route:
// nothing in the lab can reach the outside.
func setupNode(s *state, n *nodeState) error {
	if err := createNetns(n.Netns); err != nil {
		return err
	}
	// Before any link exists, so that every new link inherits rp_filter 0.
	err := setSysctls(n.Netns, map[string]string{
		"net.ipv4.ip_forward":              "1",
		"net.ipv4.conf.all.rp_filter":      "0",
		"net.ipv4.conf.default.rp_filter":  "0",
		"net.ipv4.conf.all.forwarding":     "1",
		"net.ipv4.conf.default.forwarding": "1",
	})
	if err != nil {
		return err
	}
	h, err := openNS(n.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	uh, err := openNS(s.Underlay)
	if err != nil {
		return err
	}
	defer uh.Close()

	lo, err := h.up("lo")
	if err != nil {
		return err
	}
	if err := h.addAddr(lo, hostPrefix(n.Gateway)); err != nil {
		return err
	}

	// The underlay veth: created in the underlay with its peer born in the
	// node namespace as ul0, so no interface ever exists in the root netns.
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: n.UnderlayVeth},
		PeerName:      underlayLink,
		PeerNamespace: netlink.NsFd(h.ns),
	}
	if err := uh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s for node %s: %w", n.UnderlayVeth, underlayLink, n.Name, err)
	}
	br, err := uh.LinkByName(bridgeName)
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", bridgeName, err)
	}
	ul, err := uh.LinkByName(n.UnderlayVeth)
	if err != nil {
		return fmt.Errorf("find veth %s: %w", n.UnderlayVeth, err)
	}
	if err := uh.LinkSetMaster(ul, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", n.UnderlayVeth, bridgeName, err)
	}
	if _, err := uh.up(n.UnderlayVeth); err != nil {
		return err
	}

	ul0, err := h.up(underlayLink)
	if err != nil {
		return err
	}
	if err := h.addAddr(ul0, netip.PrefixFrom(n.IP, underlayCIDR.Bits())); err != nil {
		return err
	}
	for _, o := range s.Nodes {
		if o == n {
			continue
		}
		r := &netlink.Route{LinkIndex: ul0.Attrs().Index, Dst: ipNet(o.PodCIDR), Gw: o.IP.AsSlice()}
		if err := h.addRoute(r, fmt.Sprintf("%s via %s in %s", o.PodCIDR, o.IP, n.Netns)); err != nil {
			return err
		}
	}
	return nil
}

// setupPod creates a pod's namespace and its veth: the host side stays in
// the node namespace with a /32 route to the pod, the peer is born in the
// pod namespace as eth0 with the pod IP and a default route via the node's
// gateway address.
func setupPod(n *nodeState, p *podState) error {
	if err := createNetns(p.Netns); err != nil {
		return err
	}
	ph, err := openNS(p.Netns)
	if err != nil {
		return err
	}
	defer ph.Close()
	nh, err := openNS(n.Netns)
	if err != nil {
		return err
	}
	defer nh.Close()

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.Veth},
		PeerName:      podLink,
		PeerNamespace: netlink.NsFd(ph.ns),
	}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s for pod %s: %w", p.Veth, p.Key(), err)
	}
	host, err := nh.up(p.Veth)
	if err != nil {
		return err
	}

	if _, err := ph.up("lo"); err != nil {
		return err
	}
	eth0, err := ph.up(podLink)
	if err != nil {
		return err
	}
	if err := ph.addAddr(eth0, hostPrefix(p.IP)); err != nil {
		return err
	}
	gw := hostPrefix(n.Gateway)
	if err := ph.addRoute(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipNet(gw), Scope: netlink.SCOPE_LINK},
		fmt.Sprintf("%s dev %s in %s", gw, podLink, p.Netns)); err != nil {
		return err
	}
	if err := ph.addRoute(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: n.Gateway.AsSlice()},
		fmt.Sprintf("default via %s in %s", n.Gateway, p.Netns)); err != nil {
		return err
	}
	r := &netlink.Route{
		LinkIndex: host.Attrs().Index,
		Dst:       ipNet(hostPrefix(p.IP)),
		Scope:     netlink.SCOPE_LINK,
		Src:       n.Gateway.AsSlice(),
	}
	return nh.addRoute(r, fmt.Sprintf("%s dev %s in %s", p.IP, p.Veth, n.Netns))
}

// removePodLink deletes a pod's veth pair from the node side, which takes
// the node's route to the pod with it at once. Deleting the pod's netns
// alone would do it too, but only when the kernel gets round to destroying
// the namespace, and a pod added next may reuse the address. A missing
// link is not an error.
func removePodLink(n *nodeState, p *podState) error {
	nh, err := openNS(n.Netns)
	if err != nil {
		return err
	}
	defer nh.Close()
	l, err := nh.LinkByName(p.Veth)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find veth %s of pod %s: %w", p.Veth, p.Key(), err)
	}
	if err := nh.LinkDel(l); err != nil {
		return fmt.Errorf("delete veth %s of pod %s: %w", p.Veth, p.Key(), err)
	}
	return nil
}
