package cli

// Help texts. They are the short form of man/vpn-confinement.8.md; keep
// both in step when options change (a test checks every option appears in
// both).

const helpTop = `Usage: vpn-confinement COMMAND [OPTIONS] [ARGS]

Operate vpn-confinement: systemd services confined to a network namespace
whose only way out is a WireGuard tunnel (see vpn-confinement.d(5)).

Commands:
`

const helpTopFooter = `
Run 'vpn-confinement COMMAND --help' for a command's options, and
'man vpn-confinement' for details. Exit status: 0 fine, 1 findings
(invalid configuration, failed check, problem), 2 the command failed.
`

const helpValidate = `Usage: vpn-confinement validate [OPTIONS] [FILE|DIR]...

Check namespace files exactly as vpn-confinement-generator does at boot and on
every daemon-reload: same rules, same cross-file checks, same messages.
Without arguments the whole configuration directory is checked. A FILE is
checked together with the other files of its directory, so conflicts between
files are found, but only its own results are shown.

Diagnostics are printed as FILE:LINE:COLUMN: KEY: MESSAGE (the format editors
and CI annotators understand): errors first, then warnings, then one verdict
line per file naming the units an invalid file blocks. Under a valid file's
verdict, each confined service: its hardening profile, user, capabilities,
address families, writable paths (and why), what the profile removes, and
what its app preset asks you to set in the app.

Options:
  --json              print {"files":[{"file","namespace","valid","errors",
                      "warnings","units","blocked","services"}]}; diagnostics
                      are {"file","line","column","key","message"}
  -q, --quiet         print only the diagnostics
  --strict            exit 1 on warnings too
  --config-dir DIR    directory checked without arguments
                      (default /etc/vpn-confinement.d)
  --unit-path PATHS   colon-separated unit search path for the unit-file
                      checks (default: the system unit path)

Exit status: 0 every file is valid, 1 a file is invalid (or has warnings with
--strict), 2 nothing could be validated (missing file, not a .yaml file).
`

const helpStatus = `Usage: vpn-confinement status [OPTIONS] [NAME]

Show every namespace compiled at the last daemon-reload, or only NAME:
  units       vpn-ns@NAME, vpn-wg@NAME, vpn-pin@NAME and every confined unit
              (state, main PID, frozen) and whether each running one is
              really inside the namespace (inode of /proc/PID/ns/net)
  namespace   the pin /run/netns/NAME, interfaces, addresses and routes
  tunnel      WireGuard backend (kernel or userspace), listen port, peers,
              endpoints, latest handshake, bytes received and sent
  lifecycle   the tunnel helper's state: up, connecting, stalled or blocked
              since when and why, onTunnelLoss, failovers, recreations, per
              peer its health, endpoint i of n and handshake age, units it
              holds frozen or stopped
  plan        a pending plan: the generator's plan differs from the one the
              namespace applied; the command that applies it (reload, or
              the restart a key needs)
  firewall    table inet vpn_confinement: chains, rules, sets, drop counters;
              the endpoint-pinning table when pinning is on
  dns         mode, resolvers, and the generated resolv.conf
  host link   both ends, addresses and published ports
  published   every publish address: socket and proxy state, whether
              systemd still holds the listener, live connections
  to host     egress.toHost ports, live connections, host-side counters
  port fwd    port forwarding: protocol, gateway, apps, vpn-pf@NAME
  tripwire    the host-side tripwire's drop counter of the namespace (any
              packet is an escape) and the units it watches
Then the namespaces running without a file (removed or invalid: which
units still run inside it, which already run outside, what to do) and the
host tripwire (loaded, or why this host cannot have it).
Reading the kernel state needs root; without it, status shows what it can
and says what it could not read.

Options:
  --json               stable JSON for monitoring; carries everything the
                       Prometheus textfile has (supervisor), and pendingPlan,
                       tripwire, publish, toHost, portForwarding, orphans
  --generator-dir DIR  where the generator wrote the plans
                       (default /run/systemd/generator)

Exit status: 0 no problem, 1 a problem (a failed unit, a namespace without its
firewall, a confined process outside its namespace, a blocked or stalled
tunnel, a pending plan, a tripwire count, a namespace running without a file,
a configuration changed since the last daemon-reload, ...), 2 NAME is unknown
or nothing is readable.
`

const helpVerify = `Usage: vpn-confinement verify [OPTIONS] UNIT

Attest that a running confined unit is confined as compiled, by looking at
its processes from the outside. UNIT is a listed service or socket, a
published port's proxy or socket (vpn-publish-NAME-PORT.service/.socket)
or vpn-pf@NAME:
  plan           UNIT is listed by (or runs for) a compiled namespace plan
  drop-in        systemd loaded the generated 50-vpn-confinement.conf (not a
                 same-named file elsewhere) and the effective
                 NetworkNamespacePath= is /run/netns/NAME (unit-file for the
                 proxy, which must forward to 127.0.0.1:PORT, and vpn-pf@)
  overrides      the effective settings (systemctl show) are not weaker than
                 the generated ones: capability and ambient sets, hidden paths,
                 the /run/systemd tmpfs, read-only binds, NoNewPrivileges=,
                 ProtectSystem=, the user, no bind re-exposing a hidden path,
                 no write access to a protected one, the IP filter, no
                 PrivateNetwork=, the address families, no "+" command; a
                 FAIL names the drop-in line that did it, also one that
                 appeared after the generator ran
  ip-filter      (proxy) IPAddressDeny=any, IPAddressAllow= loopback only
  running        the unit has processes to check (an idle proxy: SKIP)
  namespace      every process of the unit is in /run/netns/NAME
  firewall       that namespace holds table inet vpn_confinement
  interfaces     the namespace has no interface besides lo, the tunnel and
                 the host link
  user           (proxy) no process runs as root
  resolv.conf    (strict DNS) the file the service reads is the generated one
                 and names only the configured resolvers
  nsswitch.conf  (strict DNS) the file the service reads is the generated one
  resolver-ipc   nscd, systemd-resolved's socket and the D-Bus system bus are
                 not reachable from the service
  keys           the config directory, key files and the tunnel's credentials
                 are not visible to the service
  systemd-tmpfs  /run/systemd is a private tmpfs: no /run/systemd/private,
                 no unit directories
  system-bus     /run/dbus is hidden unless allowSystemBus
  control-planes every listening AF_UNIX path socket of the host (every
                 network namespace) looked up through the unit's root: a
                 root-owned one it can reach that is not the journal,
                 sd_notify, userdb, an allowed resolver or bus, or its own fails
  capabilities   every capability set of every process is within the compiled
                 bounding set (none for a non-root service and the proxy, the
                 profile's root set, CAP_NET_ADMIN for vpn-pf@); no forbidden
                 capability; no root process in a non-root service
  no-new-privs   the processes cannot gain privileges through exec
For the host socket vpn-publish-NAME-PORT.socket:
  unit-file      the generated file, listening in the host's namespace
  activates      it activates the proxy (or publish[].unit), which joins
                 /run/netns/NAME
  listening      PID 1 holds a listener on every published address
One line per check: PASS, FAIL or SKIP (not applicable). Needs root.

Options:
  --json               print {"unit","kind","namespace","ok","checks":[{"name",
                       "result","detail"}]}
  --generator-dir DIR  where the generator wrote the plans

Exit status: 0 every check passed, 1 a check failed (also when no plan lists
UNIT), 2 UNIT could not be checked (not root, systemd unreachable).
`

const helpDoctor = `Usage: vpn-confinement doctor [OPTIONS]

Check that this host can enforce what the configuration asks for:
  wireguard      kernel WireGuard, or the userspace fallback (/dev/net/tun)
  nftables       a table with the features the kill switch uses can be loaded
  systemd        version, and whether +BPF_FRAMEWORK makes SocketBindAllow=/
                 SocketBindDeny= (restrictBind) and RestrictNetworkInterfaces=
                 enforced; without it systemd ignores them silently
  cgroup         cgroup v2, needed for the IPAddressDeny= layer
  freezer        whether this host can freeze (cgroup.freeze); a FAIL only
                 when a namespace uses onTunnelLoss freeze
  tripwire       whether the host-side tripwire works here (probed in a
                 throwaway namespace; what a unit's hook recorded); when not,
                 it says so: nothing claims it
  install        unit templates vpn-ns@, vpn-wg@, vpn-pin@, vpn-pf@ installed
  resolv.conf    /etc/resolv.conf layout (symlinks into resolver dirs)
  resolvers      nscd, systemd-resolved, D-Bus: present, and hidden where asked
  config-dir     not writable by anyone but root
  keys           key files exist, owned by root, not readable by group/others
  routes         endpoints routable, DNS servers and allowedIPs not hidden
                 behind the host's local networks
  host-link      host-link subnets do not collide with host addresses
  published-ports  no other process already listens on a published address
                 or a wildcard covering it (the generated socket units
                 themselves excepted)
  config         every namespace file is valid
Each check prints OK, WARN or FAIL with a one-line explanation. The kernel
probes create a throwaway network namespace (never the host's) and need root.

Options:
  --json              print {"ok","checks":[{"name","result","detail"}]}
  --no-probe          skip the probes that create namespaces, links and tables
  --config-dir DIR    configuration directory (default /etc/vpn-confinement.d)
  --unit-path PATHS   colon-separated unit search path

Exit status: 0 no FAIL, 1 a check failed, 2 doctor itself failed.
`

const helpRun = `Usage: vpn-confinement run [OPTIONS] NAME [--] COMMAND [ARG]...

Run COMMAND in a transient service confined exactly like a service listed in
NAME.yaml: same namespace, DNS files, hidden control planes, resolver sockets
and keys, capability bounding set, IP filter, (baseline) hardening and
host-side tripwire hooks, bound to vpn-ns@NAME and vpn-wg@NAME (starting them
if needed). It uses systemd-run with --wait, so the exit status is COMMAND's.
Needs root.

Options:
  --user USER          run as USER (default: a dynamic user, DynamicUser=yes)
  --root               run as root, confined like a listed root service
                       (allowRoot): the profile's root capabilities only,
                       ProtectSystem=strict, /run read-only
  --family AF_NAME     allow one more address family (repeatable), as
                       extraAddressFamilies does; AF_UNIX, AF_INET, AF_INET6
                       and AF_NETLINK are always allowed
  -p, --property KEY=VALUE
                       one more unit property (repeatable), only resource
                       limits, the environment and paths that cannot weaken
                       confinement: Environment, WorkingDirectory, UMask, Nice,
                       CPUQuota, CPUWeight, IOWeight, MemoryMax, MemoryHigh,
                       TasksMax, Limit{NOFILE,NPROC,CORE,MEMLOCK},
                       RuntimeMaxSec, TimeoutStopSec, KillSignal,
                       ReadOnlyPaths, InaccessiblePaths, ReadWritePaths
                       (never into what privileged host processes load)
  --hardening PROFILE  baseline (default) or strict
  --pty                attach the terminal (default when stdin is a terminal)
  --pipe               pass stdin/stdout/stderr through (default otherwise)
  -E, --setenv VAR=VALUE
                       set an environment variable (repeatable)
  -q, --quiet          pass --quiet to systemd-run
  --dry-run            print the systemd-run command line instead of running it
  --generator-dir DIR  where the generator wrote the plans

Examples:
  vpn-confinement run media -- curl https://am.i.mullvad.net/connected
  vpn-confinement run -p ReadWritePaths=/srv/downloads media -- \
      aria2c -d /srv/downloads https://example.org/file.iso
`

const helpImport = `Usage: vpn-confinement import-wg-quick [OPTIONS] FILE

Turn a VPN provider's wg-quick file into a ready namespace file DIR/NAME.yaml:
the private key goes into DIR/keys/NAME.key (mode 0600, directory 0700) and
preshared keys into DIR/keys/NAME-peerN.psk, DNS = becomes dns.servers and
dns.search, addresses and peers are copied, and the IPv6 choice is explained
in the file. wg-quick-only keys (PostUp, Table, ...) are reported and never
imported. Existing files are never overwritten, keys are never printed, and
the result is validated before anything is written.

Options:
  --name NAME         namespace name (default: FILE's name without .conf)
  --dir DIR           configuration directory (default /etc/vpn-confinement.d)
  --ipv6 MODE         disable (default: the provider's IPv6 is left out, in
                      comments) or tunnel (IPv6 through the tunnel)
  --service UNIT      a service to confine (repeatable)
  --publish LISTEN    serve a confined port on the host, e.g. 127.0.0.1:8080
                      for a web UI on http://localhost:8080 (repeatable;
                      a publish[].listen value of vpn-confinement.d(5))
  --dns ADDR          resolver to use when FILE has no DNS = (repeatable)
  --interface IFACE   tunnel interface name (default: wg0, or the first free
                      wgN when other namespaces use it)
  --unit-path PATHS   colon-separated unit search path for the validation

Then: review DIR/NAME.yaml, list the services to confine, and run
systemctl daemon-reload.
`
