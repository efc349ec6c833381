// Debian packages, systemd units and qemu-user exist on Linux only: so do these tests.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
