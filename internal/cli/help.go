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
              (state, main PID) and whether each running one is really
              inside the namespace (inode of /proc/PID/ns/net)
  namespace   the pin /run/netns/NAME, interfaces, addresses and routes
  tunnel      WireGuard backend (kernel or userspace), listen port, peers,
              endpoints, latest handshake, bytes received and sent
  firewall    table inet vpn_confinement: chains, rules, sets, drop counters;
              the endpoint-pinning table when pinning is on
  dns         mode, resolvers, and the generated resolv.conf
  host link   both ends, addresses and published ports
  leftovers   namespaces whose file was removed while they ran: what still
              runs inside (no longer confined after a restart) and what to do
Reading the kernel state needs root; without it, status shows what it can
and says what it could not read.

Options:
  --json               stable JSON for monitoring
  --generator-dir DIR  where the generator wrote the plans
                       (default /run/systemd/generator)

Exit status: 0 no problem, 1 a problem (a failed unit, a namespace without its
firewall, a confined process outside its namespace, a configuration changed
since the last daemon-reload, ...), 2 NAME is unknown or nothing is readable.
`

const helpVerify = `Usage: vpn-confinement verify [OPTIONS] UNIT

Attest that a running confined unit is confined as compiled, by looking at
its processes from the outside:
  plan          UNIT is listed by a compiled namespace plan
  drop-in       systemd loaded 50-vpn-confinement.conf and the effective
                NetworkNamespacePath= is /run/netns/NAME
  running       the unit has processes to check
  namespace     every process of the unit is in /run/netns/NAME
  firewall      that namespace holds table inet vpn_confinement
  interfaces    the namespace has no interface besides lo, the tunnel and
                the host link
  resolv.conf   (strict DNS) the file the service reads is the generated one
                and names only the configured resolvers
  nsswitch.conf (strict DNS) the file the service reads is the generated one
  resolver-ipc  nscd, systemd-resolved's socket and the D-Bus system bus are
                not reachable from the service
  keys          the config directory, key files and the tunnel's credentials
                are not visible to the service
  capabilities  no process can gain CAP_NET_ADMIN or CAP_SYS_ADMIN
                (capability bounding set, effective and ambient sets)
  no-new-privs  the processes cannot gain privileges through exec
One line per check: PASS, FAIL or SKIP (not applicable). Needs root.

Options:
  --json               print {"unit","namespace","ok","checks":[{"name",
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
  install        unit templates vpn-ns@, vpn-wg@, vpn-pin@ installed
  resolv.conf    /etc/resolv.conf layout (symlinks into resolver dirs)
  resolvers      nscd, systemd-resolved, D-Bus: present, and hidden where asked
  config-dir     not writable by anyone but root
  keys           key files exist, owned by root, not readable by group/others
  routes         endpoints routable, DNS servers and allowedIPs not hidden
                 behind the host's local networks
  host-link      host-link subnets do not collide with host addresses
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
NAME.yaml: same namespace, DNS files, hidden resolver sockets and keys, empty
capability bounding set, IP filter and (baseline) hardening, bound to
vpn-ns@NAME and vpn-wg@NAME (starting them if needed). It uses systemd-run
with --wait, so the exit status is COMMAND's. Needs root.

Options:
  --user USER          run as USER (default: a dynamic user, DynamicUser=yes)
  --root               run as root (still without capabilities)
  --hardening PROFILE  baseline (default) or strict
  --pty                attach the terminal (default when stdin is a terminal)
  --pipe               pass stdin/stdout/stderr through (default otherwise)
  -E, --setenv VAR=VALUE
                       set an environment variable (repeatable)
  -q, --quiet          pass --quiet to systemd-run
  --dry-run            print the systemd-run command line instead of running it
  --generator-dir DIR  where the generator wrote the plans

Example:
  vpn-confinement run media -- curl https://am.i.mullvad.net/connected
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
