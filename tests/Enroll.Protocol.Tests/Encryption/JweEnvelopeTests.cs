using System.Security.Cryptography;
using System.Text;
using Enroll.Protocol.Encryption;
using FsCheck.Xunit;

namespace Enroll.Protocol.Tests.Encryption;

public sealed class JweEnvelopeTests
{
    private static readonly ECDiffieHellman ServerKey = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);

    private static ECDiffieHellman? Find(string kid) => kid == "server-1" ? ServerKey : null;

    [Fact]
    public void ConcatKdf_MatchesTheRfc7518AppendixCExample()
    {
        // RFC 7518, Appendix C: ECDH-ES with A128GCM, apu "Alice", apv "Bob".
        using var bob = ECDiffieHellman.Create(new ECParameters
        {
            Curve = ECCurve.NamedCurves.nistP256,
            D = Base64Url("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw"),
            Q = new ECPoint { X = Base64Url("weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ"), Y = Base64Url("e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck") },
        });
        using var alice = ECDiffieHellman.Create(new ECParameters
        {
            Curve = ECCurve.NamedCurves.nistP256,
            Q = new ECPoint { X = Base64Url("gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0"), Y = Base64Url("SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps") },
        });
        var z = bob.DeriveRawSecretAgreement(alice.PublicKey);

        var key = JweEnvelope.ConcatKdf(z, "A128GCM", "Alice", "Bob", 128);

        Assert.Equal("VqqN6vgjbSBcIijNcacQGg", System.Buffers.Text.Base64Url.EncodeToString(key));
    }

    [Property(MaxTest = 200)]
    public bool SealedRequest_OpensToTheSamePlaintext_AndItsAnswerOpensWithTheResponseKey(byte[] plaintext, string requestId)
    {
        var sealedRequest = JweEnvelope.SealRequest(plaintext, ServerKey, "server-1");
        var opened = JweEnvelope.TryOpenRequest(Encoding.ASCII.GetBytes(sealedRequest.Compact), Find, out var roundTrip, out var responseKey, out _);
        var answer = JweEnvelope.SealResponse(plaintext, responseKey, requestId);
        var answerOpened = JweEnvelope.TryOpenResponse(Encoding.ASCII.GetBytes(answer), sealedRequest.ResponseKey, out var answerText, out _);

        return opened && roundTrip.SequenceEqual(plaintext) && answerOpened && answerText.SequenceEqual(plaintext)
            && JweEnvelope.ReadResponseRequestId(Encoding.ASCII.GetBytes(answer)) == requestId;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Request_WithAnyPartTampered_IsRefused(int part)
    {
        var sealedRequest = JweEnvelope.SealRequest("""{"client_id":"c1"}"""u8, ServerKey, "server-1");
        var parts = sealedRequest.Compact.Split('.');
        parts[part] = Flip(parts[part]);

        var opened = JweEnvelope.TryOpenRequest(Encoding.ASCII.GetBytes(string.Join('.', parts)), Find, out _, out _, out var error);

        Assert.False(opened);
        Assert.NotEmpty(error);
    }

    [Fact]
    public void Request_ForAnUnknownKeyId_IsRefusedWithAClearReason()
    {
        var sealedRequest = JweEnvelope.SealRequest("{}"u8, ServerKey, "retired-key");

        Assert.False(JweEnvelope.TryOpenRequest(Encoding.ASCII.GetBytes(sealedRequest.Compact), Find, out _, out _, out var error));
        Assert.Contains("unknown encryption key", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Request_SealedForAnotherServerKey_FailsAuthentication()
    {
        using var other = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        var sealedRequest = JweEnvelope.SealRequest("{}"u8, other, "server-1");

        Assert.False(JweEnvelope.TryOpenRequest(Encoding.ASCII.GetBytes(sealedRequest.Compact), Find, out _, out _, out var error));
        Assert.Contains("authentication", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Answer_OpenedWithAnotherRequestsKey_FailsAuthentication()
    {
        var first = JweEnvelope.SealRequest("{}"u8, ServerKey, "server-1");
        var second = JweEnvelope.SealRequest("{}"u8, ServerKey, "server-1");
        var answer = JweEnvelope.SealResponse("""{"jwt_token":"secret"}"""u8, first.ResponseKey, "r1");

        Assert.False(JweEnvelope.TryOpenResponse(Encoding.ASCII.GetBytes(answer), second.ResponseKey, out _, out _));
    }

    [Fact]
    public void SealingTheSameRequestTwice_NeverRepeatsKeyOrNonce()
    {
        var envelopes = Enumerable.Range(0, 100).Select(_ => JweEnvelope.SealRequest("same"u8, ServerKey, "server-1")).ToList();

        Assert.Equal(100, envelopes.Select(e => e.Compact.Split('.')[0]).Distinct().Count());
        Assert.Equal(100, envelopes.Select(e => e.Compact.Split('.')[2]).Distinct().Count());
        Assert.Equal(100, envelopes.Select(e => Convert.ToBase64String(e.ResponseKey)).Distinct().Count());
    }

    [Theory]
    [InlineData("{\"client_id\":\"x\"}", false)]
    [InlineData("eyJhbGciOiJFQ0RILUVTIn0..aaaa.bbbb.cccc", true)]
    [InlineData("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", false)]
    [InlineData("", false)]
    public void LooksLikeJwe_RecognisesOnlyFivePartCompactSerialisations(string payload, bool expected) =>
        Assert.Equal(expected, JweEnvelope.LooksLikeJwe(Encoding.UTF8.GetBytes(payload)));

    private static byte[] Base64Url(string text) => System.Buffers.Text.Base64Url.DecodeFromChars(text);

    private static string Flip(string part)
    {
        var bytes = System.Buffers.Text.Base64Url.DecodeFromChars(part);
        bytes[bytes.Length / 2] ^= 0x01;
        return System.Buffers.Text.Base64Url.EncodeToString(bytes);
    }
}
