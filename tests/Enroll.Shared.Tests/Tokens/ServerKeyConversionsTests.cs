using System.Security.Cryptography;
using Enroll.Protocol.Messages;
using Enroll.Shared.Tokens;

namespace Enroll.Shared.Tests.Tokens;

public sealed class ServerKeyConversionsTests
{
    [Fact]
    public void AKeyAlreadyImported_IsReused_AcrossKeySets()
    {
        using var signing = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var next = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var first = new ServerKeySet([ServerKeyConversions.ToServerKey(signing, $"sig-{Guid.NewGuid():N}")]);
        var rotated = new ServerKeySet([first.Keys[0], ServerKeyConversions.ToServerKey(next, $"sig-{Guid.NewGuid():N}")]);

        var a = ServerKeyConversions.ToVerificationKeys(first);
        var b = ServerKeyConversions.ToVerificationKeys(first);
        var c = ServerKeyConversions.ToVerificationKeys(rotated);

        // One import per key for any number of devices in the process; a rotated set adds only its new key.
        Assert.Same(a[0], b[0]);
        Assert.Same(a[0], c[0]);
        Assert.Equal(2, c.Count);
        Assert.NotSame(c[0], c[1]);
        Assert.Equal(rotated.Keys[1].Kid, c[1].KeyId);
    }

    [Fact]
    public void ASameKeyIdWithAnotherPoint_IsImportedAnew()
    {
        using var one = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var kid = $"sig-{Guid.NewGuid():N}";

        var a = ServerKeyConversions.ToVerificationKeys(new ServerKeySet([ServerKeyConversions.ToServerKey(one, kid)]));
        var b = ServerKeyConversions.ToVerificationKeys(new ServerKeySet([ServerKeyConversions.ToServerKey(other, kid)]));

        Assert.NotSame(a[0], b[0]);
    }
}
