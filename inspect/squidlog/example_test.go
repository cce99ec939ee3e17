package squidlog_test

import (
	"fmt"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/inspect/squidlog"
)

func Example() {
	cat, _ := inspect.NewCatalog(inspect.DefaultTetraHosts, nil, nil)
	p, err := squidlog.NewParser(squidlog.Config{
		Format:    squidlog.FormatCustom,
		LogFormat: squidlog.LogFormatSquid + " %err_code %err_detail",
		Catalog:   cat,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	line := "1700000000.120     20 10.0.0.7 TCP_TUNNEL/503 0 CONNECT " +
		"tetra-defs.eu.amp.cisco.com:443 - HIER_NONE/- - ERR_DNS_FAIL -"
	ev, err := p.Parse([]byte(line))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Time.Format("15:04:05.000"), ev.Endpoint, ev.Outcome, ev.LastError)
	fmt.Println(ev.Detail)
	// Output:
	// 22:13:20.100 tetra dns_failure 4294965187
	// squid: TCP_TUNNEL/503 HIER_NONE/- err=ERR_DNS_FAIL; Squid could not resolve the name
}
