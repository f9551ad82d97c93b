// Command dashboard-linter lints Grafana dashboards.
//
// workerscope's copy (see WORKERSCOPE.md): the upstream command line, on
// the standard library's flag package instead of cobra and viper, without
// --fix (it needed the conflate module; workerscope's dashboard is
// generated, so fixes go into its generator). Same subcommands, flags and
// output otherwise.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/grafana/dashboard-linter/lint"
)

func usage() {
	fmt.Fprintln(os.Stderr, `dashboard-linter: lint Grafana dashboards.

  dashboard-linter lint [--strict] [--verbose] [--config .lint] [--stdin | dashboard.json]
  dashboard-linter rules`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "rules":
		rules := lint.NewRuleSet()
		for _, rule := range rules.Rules() {
			fmt.Printf("* `%s` - %s\n", rule.Name(), rule.Description())
		}
	case "lint":
		if err := lintCmd(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

func lintCmd(args []string) error {
	fs := flag.NewFlagSet("lint", flag.ExitOnError)
	strict := fs.Bool("strict", false, "fail upon linting error or warning")
	verbose := fs.Bool("verbose", false, "show more information about linting")
	configFile := fs.String("config", "", "path to a configuration file (default: .lint beside the dashboard)")
	fs.StringVar(configFile, "c", "", "shorthand for --config")
	stdin := fs.Bool("stdin", false, "read from stdin")
	_ = fs.Parse(args)

	var buf []byte
	var err error
	filename := ""
	switch {
	case *stdin && fs.NArg() == 0:
		if buf, err = io.ReadAll(os.Stdin); err != nil {
			return fmt.Errorf("failed to read stdin: %v", err)
		}
	case !*stdin && fs.NArg() == 1:
		filename = fs.Arg(0)
		if buf, err = os.ReadFile(filename); err != nil {
			return fmt.Errorf("failed to read file %s: %v", filename, err)
		}
	default:
		usage()
	}

	dashboard, err := lint.NewDashboard(buf)
	if err != nil {
		return fmt.Errorf("failed to parse dashboard: %v", err)
	}
	// if no config flag was passed, set a default path of a .lint file in the dashboards directory
	if *configFile == "" {
		*configFile = path.Join(path.Dir(filename), ".lint")
	}
	config := lint.NewConfigurationFile()
	if err := config.Load(*configFile); err != nil {
		return fmt.Errorf("failed to load lint config: %v", err)
	}
	config.Verbose = *verbose

	rules := lint.NewRuleSet()
	results, err := rules.Lint([]lint.Dashboard{dashboard})
	if err != nil {
		return fmt.Errorf("failed to lint dashboard: %v", err)
	}
	results.Configure(config)
	results.ReportByRule()

	if *strict && results.MaximumSeverity() >= lint.Warning {
		return fmt.Errorf("there were linting errors, please see previous output")
	}
	return nil
}
