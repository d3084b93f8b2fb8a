package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/offline"
)

// pspCommand is `xdpstack psp`: offline tools like Google's reference
// psp_encrypt and psp_decrypt, key derivation, and the certificates of
// the gateway's key exchange.
func pspCommand() *cli.Command {
	return &cli.Command{
		Name:  "psp",
		Usage: "encrypt and decrypt pcap files with PSP, derive SA keys (offline); make the gateway's certificates; ask a running gateway",
		Subcommands: append([]*cli.Command{
			pspEncryptCommand(),
			pspDecryptCommand(),
			pspDeriveCommand(),
			pspCertsCommand(),
		}, pspGatewayCommands()...),
	}
}

// masterKeysEnv holds the master keys for the psp verbs when no flag
// gives them.
const masterKeysEnv = "XDPSTACK_PSP_MASTER_KEYS"

var (
	pspReadFlag = &cli.StringFlag{
		Name: "read", Aliases: []string{"r"},
		Usage: "read frames from `FILE` (pcap or pcapng, Ethernet; required)",
	}
	pspWriteFlag = &cli.StringFlag{
		Name: "write", Aliases: []string{"w"},
		Usage: "write frames to `FILE` (pcap; required); left as it was if the run fails",
	}
	pspKeyFileFlag = &cli.StringFlag{
		Name: "key-file",
		Usage: "read the receiver's two master keys from `FILE`: HEX0,HEX1 (64 hex digits each; a comma, " +
			"spaces or a new line between them). It must be readable by its owner alone (chmod 600). " +
			"Without this flag or --master-keys, the keys come from $" + masterKeysEnv,
	}
	pspMasterKeysFlag = &cli.StringFlag{
		Name:  "master-keys",
		Usage: "the master keys themselves, `HEX0,HEX1`: UNSAFE, any user can read them in ps; for tests (use --key-file)",
	}
	pspSPIFlag = &cli.StringFlag{
		Name:  "spi",
		Usage: "security parameter index in `HEX`; its top bit selects master key 1",
	}
	pspVersionFlag = &cli.StringFlag{
		Name:  "version",
		Usage: "PSP version `N`: 0 aes-gcm-128, 1 aes-gcm-256, 2 aes-gmac-128, 3 aes-gmac-256",
	}
)

func pspEncryptCommand() *cli.Command {
	return &cli.Command{
		Name:  "encrypt",
		Usage: "wrap every IP frame of a pcap file in PSP (frames that are not IP are skipped)",
		Description: "Either --cfg, or the master keys (--key-file, $" + masterKeysEnv + " or --master-keys),\n" +
			"--spi, --version and --mode. Errors name frames from 1, as Wireshark numbers them.",
		Flags: []cli.Flag{
			pspReadFlag, pspWriteFlag,
			&cli.StringFlag{Name: "cfg", Usage: "take keys, SPI, mode, algorithm, crypt offsets and VC from a psp_encrypt config `FILE`"},
			pspKeyFileFlag, pspMasterKeysFlag, pspSPIFlag, pspVersionFlag,
			&cli.StringFlag{Name: "mode", Usage: "`MODE`: transport or tunnel"},
			&cli.UintFlag{Name: "crypt-offset", Usage: "leave `N` 4-byte units after the PSP header in the clear (0 to 63)"},
			&cli.BoolFlag{Name: "vc", Usage: "add an 8-byte virtualization cookie"},
			&cli.Uint64Flag{Name: "iv-start", Value: 1, Usage: "IV `N` of the first frame, counting up by one per frame"},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			cfg, err := pspEncryptConfig(c)
			if err != nil {
				return err
			}
			sum, err := offline.EncryptFile(c.String("read"), c.String("write"), &cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "encrypted %d frames into %s, skipped %d that were not IP\n", sum.Frames, c.String("write"), sum.Skipped)
			return nil
		},
	}
}

// pspEncryptConfig checks the flags of psp encrypt before any file is
// touched.
func pspEncryptConfig(c *cli.Context) (offline.Config, error) {
	var cfg offline.Config
	if err := needFlags(c, "read", "write"); err != nil {
		return cfg, err
	}
	var err error
	if path := c.String("cfg"); path != "" {
		for _, name := range []string{"key-file", "master-keys", "spi", "version", "mode", "crypt-offset", "vc"} {
			if c.IsSet(name) {
				return cfg, fmt.Errorf("psp encrypt: --cfg and --%s both given (the config file sets it)", name)
			}
		}
		if cfg, err = offline.ReadConfigFile(path); err != nil {
			return cfg, err
		}
	} else {
		if err := needFlags(c, "spi", "version", "mode"); err != nil {
			return cfg, err
		}
		if cfg.MasterKeys, cfg.SPI, cfg.Version, err = pspKeyFlags(c); err != nil {
			return cfg, err
		}
		if cfg.Encap.Mode, err = psp.ParseMode(c.String("mode")); err != nil {
			return cfg, err
		}
		off := c.Uint("crypt-offset")
		if off > 63 {
			return cfg, fmt.Errorf("psp encrypt: --crypt-offset %d: want 0 to 63 (4-byte units)", off)
		}
		cfg.Encap.CryptOffset4, cfg.Encap.CryptOffset6 = uint8(off), uint8(off)
		cfg.Encap.VC = c.Bool("vc")
	}
	cfg.FirstIV = c.Uint64("iv-start")
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("psp encrypt: %w", err)
	}
	return cfg, nil
}

// pspKeyFlags reads the master keys, --spi and --version.
func pspKeyFlags(c *cli.Context) ([2]psp.MasterKey, uint32, psp.Version, error) {
	keys, err := pspMasterKeys(c)
	if err != nil {
		return keys, 0, 0, err
	}
	spi, err := psp.ParseSPI(c.String("spi"))
	if err != nil {
		return keys, 0, 0, err
	}
	v, err := psp.ParseVersion(c.String("version"))
	return keys, spi, v, err
}

// pspMasterKeys reads the master keys from --key-file or --master-keys,
// else from the environment. Errors say which of them is wrong and how,
// never what it holds.
func pspMasterKeys(c *cli.Context) ([2]psp.MasterKey, error) {
	var keys [2]psp.MasterKey
	var source, text string
	switch {
	case c.IsSet("key-file") && c.IsSet("master-keys"):
		return keys, fmt.Errorf("%s: --key-file and --master-keys both given (give one)", commandName(c))
	case c.IsSet("key-file"):
		path := c.String("key-file")
		b, err := readPrivateFile(path, "keys", maxKeyFile)
		if err != nil {
			return keys, fmt.Errorf("--key-file %s: %w", path, err)
		}
		source, text = "--key-file "+path, string(b)
	case c.IsSet("master-keys"):
		source, text = "--master-keys", c.String("master-keys")
	default:
		var ok bool
		if text, ok = os.LookupEnv(masterKeysEnv); !ok {
			return keys, fmt.Errorf("%s: master keys missing (give --key-file FILE, or set %s)", commandName(c), masterKeysEnv)
		}
		source = masterKeysEnv
	}
	keys, err := psp.ParseMasterKeys(text)
	if err != nil {
		return keys, fmt.Errorf("%s: %w", source, err)
	}
	return keys, nil
}

// maxKeyFile bounds a key file: two keys and some room.
const maxKeyFile = 4096

// readPrivateFile reads a file of secrets (what: "keys"), which its
// owner alone may read: secrets that others can read are no longer
// secret. It reads at most max bytes.
func readPrivateFile(path, what string, max int) ([]byte, error) {
	f, err := os.Open(path)
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return nil, pathErr.Err // the caller names the path
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("mode %04o lets others than its owner at the %s (chmod 600 %s)", perm, what, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("longer than %d bytes: not a file of %s", max, what)
	}
	return b, nil
}

func pspDecryptCommand() *cli.Command {
	return &cli.Command{
		Name: "decrypt",
		Usage: "verify and unwrap every PSP frame of a pcap file (other frames are skipped); " +
			"exits non-zero naming the first frame that does not verify",
		Description: "The master keys come from --key-file, $" + masterKeysEnv + " or --master-keys.",
		Flags:       []cli.Flag{pspReadFlag, pspWriteFlag, pspKeyFileFlag, pspMasterKeysFlag},
		Before:      noArgs,
		Action: func(c *cli.Context) error {
			if err := needFlags(c, "read", "write"); err != nil {
				return err
			}
			keys, err := pspMasterKeys(c)
			if err != nil {
				return err
			}
			sum, err := offline.DecryptFile(c.String("read"), c.String("write"), &keys)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "decrypted %d frames into %s, skipped %d that were not PSP\n", sum.Frames, c.String("write"), sum.Skipped)
			return nil
		},
	}
}

func pspDeriveCommand() *cli.Command {
	return &cli.Command{
		Name:        "derive",
		Usage:       "print the key of an SPI, derived from the master keys as the receiver does",
		Description: "The master keys come from --key-file, $" + masterKeysEnv + " or --master-keys.",
		Flags:       []cli.Flag{pspKeyFileFlag, pspMasterKeysFlag, pspSPIFlag, pspVersionFlag},
		Before:      noArgs,
		Action: func(c *cli.Context) error {
			if err := needFlags(c, "spi", "version"); err != nil {
				return err
			}
			keys, spi, v, err := pspKeyFlags(c)
			if err != nil {
				return err
			}
			key, err := psp.DeriveKey(&keys, spi, v)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, hex.EncodeToString(key))
			return nil
		},
	}
}
