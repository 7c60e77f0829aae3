// Command vpn-confinement is the operator CLI of vpn-confinement; see
// vpn-confinement(8). All logic lives in internal/cli.
package main

import (
	"os"

	"github.com/vpn-confinement/vpn-confinement/internal/cli"
)

func main() {
	os.Exit(cli.Main(cli.DefaultEnv(), os.Args[1:]))
}
