package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment variable of a flag: RINGKV_ and the flag's
// name in capitals with - as _ (--data-dir: RINGKV_DATA_DIR).
func envName(flag string) string {
	return "RINGKV_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applySettings gives every flag of cmd that the command line did not set
// its value from the environment (RINGKV_<FLAG>), else from the config
// file (when path is not empty): flags > environment > file.
func applySettings(cmd *cobra.Command, path string) error {
	var file map[string]string
	if path != "" {
		var err error
		if file, err = readConfigFile(path); err != nil {
			return err
		}
		for name := range file {
			if cmd.Flags().Lookup(name) == nil {
				return fmt.Errorf("--config %s: unknown setting %q (settings are the flags of `ringkv %s --help`, without the dashes)", path, name, cmd.Name())
			}
		}
	}
	var errs []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		from, value, ok := "", "", false
		if v, set := os.LookupEnv(envName(f.Name)); set {
			from, value, ok = envName(f.Name), v, true
		} else if v, set := file[f.Name]; set {
			from, value, ok = path, v, true
		}
		if !ok {
			return
		}
		if err := cmd.Flags().Set(f.Name, value); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s=%q: %v", from, f.Name, value, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("settings: %s", strings.Join(errs, "; "))
	}
	return nil
}

// readConfigFile reads a config file: one setting per line, NAME = VALUE
// (or NAME: VALUE), NAME a flag's name without dashes, VALUE optionally
// in double quotes (Go syntax); blank lines and # comments are ignored.
func readConfigFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("--config %s:%d: want NAME = VALUE, got %q", path, n, line)
		}
		name := strings.TrimPrefix(strings.TrimSpace(line[:i]), "--")
		value := strings.TrimSpace(line[i+1:])
		if strings.HasPrefix(value, `"`) {
			uq, err := strconv.Unquote(value)
			if err != nil {
				return nil, fmt.Errorf("--config %s:%d: %s: bad quoted value: %v", path, n, name, err)
			}
			value = uq
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--config %s:%d: %s set twice", path, n, name)
		}
		out[name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	return out, nil
}
