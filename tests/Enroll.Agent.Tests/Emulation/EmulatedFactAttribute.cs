using Enroll.Agent.Tests.Infrastructure;

namespace Enroll.Agent.Tests.Emulation;

/// <summary>The emulated targets: arm64 in the suite, 32-bit arm on request.</summary>
public enum EmulatedTarget
{
    Arm64,
    Arm32,
}

/// <summary>
/// A fact that needs qemu. arm64: skipped, saying why, on a developer's machine without qemu-user-static, never on CI
/// (CI=true), where the missing emulator fails the test instead. 32-bit arm: run only when ENROLL_TEST_ARM32=1 (what
/// scripts/test-arm-emulated.sh sets): its build needs the linux-arm runtime pack, which not every package registry
/// serves (this project's does not: docs/device.md), and it is a JIT-compiled single file (no Native AOT for linux-arm).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class EmulatedFactAttribute : FactAttribute
{
    public EmulatedFactAttribute(EmulatedTarget target)
    {
        if (target == EmulatedTarget.Arm32)
        {
            if (Environment.GetEnvironmentVariable("ENROLL_TEST_ARM32") != "1")
            {
                Skip = "the 32-bit arm agent under qemu is run by scripts/test-arm-emulated.sh (ENROLL_TEST_ARM32=1), not by the suite: its build needs the linux-arm runtime pack, which this project's package registry does not serve (docs/device.md)";
            }
        }
        else if (!Repository.IsCi && Emulator.Arm64.Find() is null)
        {
            Skip = $"{Emulator.Arm64.Program} is not installed (sudo apt-get install -y qemu-user-static, or run scripts/test.sh, which installs it); on CI (CI=true) this test fails instead of skipping";
        }
    }
}
