//go:build linux

package tripwire

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/vpn-confinement/vpn-confinement/internal/firewall"
)

// UnsupportedError says why this host cannot have a tripwire. It is not a
// failure of the caller: the tripwire is defence in depth, and a host
// without it must still start its confined services.
type UnsupportedError struct {
	Reason string
	Err    error // the underlying error, if any
}

func (e *UnsupportedError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func (e *UnsupportedError) Unwrap() error { return e.Err }

// IsUnsupported reports whether err says the host cannot have a tripwire.
func IsUnsupported(err error) bool {
	var u *UnsupportedError
	return errors.As(err, &u)
}

// probeTable is the throwaway table of Supported. It is added and deleted
// in the same batch, so it is never visible, and concurrent probes cannot
// collide.
const probeTable = "vpnc_tripwire_probe"

// Supported checks that the host can run the tripwire: a cgroup2 hierarchy
// is mounted, and the kernel accepts the table's rules in both hooks. Like
// Mullvad's split-tunnel probe it loads a test table with the real rule
// shape and deletes it in the same transaction. It returns nil, an
// *UnsupportedError with a precise reason, or another error when support
// could not be determined (no privilege, say).
func (h *Host) Supported() error {
	if _, err := h.mount(); err != nil {
		if errors.Is(err, ErrNoCgroup2) {
			return &UnsupportedError{Reason: ErrNoCgroup2.Error()}
		}
		return err
	}
	err := probe(h, true)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("tripwire: probe: %w (needs CAP_NET_ADMIN)", err)
	}
	// Tell "no nf_tables at all" from "no socket cgroupv2": the same
	// batch without the socket rules.
	if berr := probe(h, false); berr != nil {
		if errors.Is(berr, unix.EPROTONOSUPPORT) || errors.Is(berr, unix.ENOENT) || errors.Is(berr, unix.EOPNOTSUPP) {
			return &UnsupportedError{Reason: "the kernel has no usable nf_tables (CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET)", Err: berr}
		}
		return fmt.Errorf("tripwire: probe nf_tables: %w", berr)
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return &UnsupportedError{Reason: "the kernel has no nftables socket expression (CONFIG_NFT_SOCKET)", Err: err}
	case errors.Is(err, unix.EOPNOTSUPP):
		return &UnsupportedError{Reason: "the kernel's nftables socket expression cannot match cgroupv2 in the input and output hooks (needs Linux >= 5.13 with CONFIG_SOCK_CGROUP_DATA)", Err: err}
	}
	return fmt.Errorf("tripwire: probe socket cgroupv2: %w", err)
}

// probe loads and deletes a copy of the table's shape in one batch, with
// or without the socket rules.
func probe(h *Host, withSocket bool) error {
	c, err := firewall.Dial(h.NS, 0)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return &UnsupportedError{Reason: "the kernel has no nfnetlink", Err: err}
		}
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: probeTable}
	c.AddTable(t)
	set := unitsMap()
	set.Table = t
	if err := c.AddSet(set, nil); err != nil {
		return err
	}
	for _, hook := range Hooks {
		base := baseChain(hook)
		base.Table = t
		ch := c.AddChain(base)
		if withSocket {
			r := levelRule(ch, 1)
			r.Table = t
			c.AddRule(r)
		}
	}
	c.DelTable(t)
	return c.Flush()
}
