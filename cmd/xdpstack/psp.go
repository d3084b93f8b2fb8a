package main

import (
	"encoding/hex"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/offline"
)

// pspCommand is `xdpstack psp`: offline tools like Google's reference
// psp_encrypt and psp_decrypt, and key derivation.
func pspCommand() *cli.Command {
	return &cli.Command{
		Name:  "psp",
		Usage: "encrypt and decrypt pcap files with PSP, derive SA keys (offline)",
		Subcommands: []*cli.Command{
			pspEncryptCommand(),
			pspDecryptCommand(),
			pspDeriveCommand(),
		},
	}
}

var (
	pspReadFlag = &cli.StringFlag{
		Name: "read", Aliases: []string{"r"}, Required: true,
		Usage: "read frames from `FILE` (pcap or pcapng, Ethernet)",
	}
	pspWriteFlag = &cli.StringFlag{
		Name: "write", Aliases: []string{"w"}, Required: true,
		Usage: "write frames to `FILE` (pcap); left as it was if the run fails",
	}
	pspMasterKeysFlag = &cli.StringFlag{
		Name:  "master-keys",
		Usage: "the receiver's two master keys, `HEX0,HEX1` (64 hex digits each)",
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
		Description: "Either --cfg, or --master-keys, --spi, --version and --mode.\n" +
			"Errors name frames from 1, as Wireshark numbers them.",
		Flags: []cli.Flag{
			pspReadFlag, pspWriteFlag,
			&cli.StringFlag{Name: "cfg", Usage: "take keys, SPI, mode, algorithm, crypt offsets and VC from a psp_encrypt config `FILE`"},
			pspMasterKeysFlag, pspSPIFlag, pspVersionFlag,
			&cli.StringFlag{Name: "mode", Usage: "`MODE`: transport or tunnel"},
			&cli.UintFlag{Name: "crypt-offset", Usage: "leave `N` 4-byte units after the PSP header in the clear (0 to 63)"},
			&cli.BoolFlag{Name: "vc", Usage: "add an 8-byte virtualization cookie"},
			&cli.Uint64Flag{Name: "iv-start", Value: 1, Usage: "IV `N` of the first frame, counting up by one per frame"},
		},
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
	var err error
	if path := c.String("cfg"); path != "" {
		for _, name := range []string{"master-keys", "spi", "version", "mode", "crypt-offset", "vc"} {
			if c.IsSet(name) {
				return cfg, fmt.Errorf("psp encrypt: --cfg and --%s both given (the config file sets it)", name)
			}
		}
		if cfg, err = offline.ReadConfigFile(path); err != nil {
			return cfg, err
		}
	} else {
		for _, name := range []string{"master-keys", "spi", "version", "mode"} {
			if !c.IsSet(name) {
				return cfg, fmt.Errorf("psp encrypt: --%s missing (or give --cfg)", name)
			}
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

// pspKeyFlags reads --master-keys, --spi and --version.
func pspKeyFlags(c *cli.Context) ([2]psp.MasterKey, uint32, psp.Version, error) {
	keys, err := psp.ParseMasterKeys(c.String("master-keys"))
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

func pspDecryptCommand() *cli.Command {
	return &cli.Command{
		Name: "decrypt",
		Usage: "verify and unwrap every PSP frame of a pcap file (other frames are skipped); " +
			"exits non-zero naming the first frame that does not verify",
		Flags: []cli.Flag{pspReadFlag, pspWriteFlag, withRequired(pspMasterKeysFlag)},
		Action: func(c *cli.Context) error {
			keys, err := psp.ParseMasterKeys(c.String("master-keys"))
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
		Name:  "derive",
		Usage: "print the key of an SPI, derived from the master keys as the receiver does",
		Flags: []cli.Flag{withRequired(pspMasterKeysFlag), withRequired(pspSPIFlag), withRequired(pspVersionFlag)},
		Action: func(c *cli.Context) error {
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

func withRequired(f *cli.StringFlag) *cli.StringFlag {
	r := *f
	r.Required = true
	return &r
}
