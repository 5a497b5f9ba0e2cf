package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/auth"
)

func newUserCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the users of an --auth-file (passwords and bearer tokens)",
		Long: `Writes the users file a node reads with --auth-file. Passwords are kept
hashed (PBKDF2-SHA256), tokens as their SHA-256; the file is written with
mode 0600 and replaced atomically. Nodes read it at start: give every node
the same file and restart them (one at a time) after a change.`,
	}
	cmd.PersistentFlags().StringVar(&file, "auth-file", "", "the users file (required)")
	needFile := func() error {
		if file == "" {
			return errors.New("--auth-file is required")
		}
		return nil
	}
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user, or set an existing user's password",
		Long: `Reads the password from the first line of standard input
(echo "$PASSWORD" | ringkv user add alice --auth-file users), so it never
shows in the process list. A Redis client logs in with AUTH alice PASSWORD;
the user "default" is the one AUTH PASSWORD (one argument) checks.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needFile(); err != nil {
				return err
			}
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("reading the password from standard input: %w", err)
			}
			password := strings.TrimRight(line, "\r\n")
			if len(password) < 8 {
				return errors.New("the password must be at least 8 characters")
			}
			hash, err := auth.HashPassword(password)
			if err != nil {
				return err
			}
			if err := auth.Update(file, auth.SetPassword(args[0], hash)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s: password set in %s\n", args[0], file)
			return nil
		},
	}
	token := &cobra.Command{
		Use:   "token NAME",
		Short: "Give a user a new bearer token, printed once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needFile(); err != nil {
				return err
			}
			tok, hash, err := auth.NewToken()
			if err != nil {
				return err
			}
			if err := auth.Update(file, auth.AddToken(args[0], hash)); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "user %s: new token saved (hashed) in %s; it is not shown again\n", args[0], file)
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a user's password and tokens",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needFile(); err != nil {
				return err
			}
			return auth.Update(file, auth.Remove(args[0]))
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needFile(); err != nil {
				return err
			}
			users, err := auth.Load(file)
			if err != nil {
				return err
			}
			for _, name := range users.Names() {
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return nil
		},
	}
	cmd.AddCommand(add, token, remove, list)
	return cmd
}

func newGossipKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gossip-key",
		Short: "Print a new random gossip key (for --gossip-key-file)",
		Long: `Prints 32 random bytes in base64: write them to a file (mode 0600) given
to every node with --gossip-key-file. Gossip is then encrypted and
authenticated (AES-256-GCM); a node without the key cannot join.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(key))
			return nil
		},
	}
}
