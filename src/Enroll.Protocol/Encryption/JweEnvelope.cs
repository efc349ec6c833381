using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Enroll.Protocol.Encryption;

/// <summary>A request sealed for the server, and the key that opens the server's answer to it.</summary>
/// <param name="Compact">The JWE compact serialisation to publish.</param>
/// <param name="ResponseKey">The 256-bit key the answer is encrypted with (JWE <c>dir</c>).</param>
public sealed record SealedRequest(string Compact, byte[] ResponseKey);

/// <summary>
/// End-to-end encryption of request and response payloads (SPEC §4.3), as standard JWE (RFC 7516/7518) compact
/// serialisation so firmware can use any JOSE library:
/// <list type="bullet">
/// <item>Request: <c>{"alg":"ECDH-ES","enc":"A256GCM","kid":server key,"epk":ephemeral P-256 key}</c>; the content key
/// is Concat KDF(Z, AlgorithmID "A256GCM", PartyUInfo "", PartyVInfo "", 256 bits).</item>
/// <item>Response: <c>{"alg":"dir","enc":"A256GCM","rid":request_id}</c> with the key Concat KDF(Z, "A256GCM",
/// PartyUInfo "enroll-response", PartyVInfo "", 256 bits), so only the holder of the request's ephemeral key reads it.</item>
/// </list>
/// Every message uses a fresh ephemeral key and a random 96-bit IV, so key/nonce pairs never repeat. The protected header is
/// the AES-GCM additional data: tampering with header, IV, ciphertext or tag fails decryption.
/// </summary>
public static class JweEnvelope
{
    /// <summary>The MQTT content type of encrypted payloads.</summary>
    public const string ContentType = "application/jose";

    /// <summary>PartyUInfo of the response key derivation.</summary>
    public const string ResponseKeyLabel = "enroll-response";

    private const string Enc = "A256GCM";
    private const int TagSize = 16;
    private const int IvSize = 12;

    /// <summary>True when <paramref name="payload"/> has the shape of a JWE compact serialisation (five base64url parts).</summary>
    public static bool LooksLikeJwe(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 10 || payload[0] != (byte)'e' || payload[1] != (byte)'y')
        {
            return false;
        }

        var dots = 0;
        foreach (var b in payload)
        {
            if (b == (byte)'.')
            {
                dots++;
            }
            else if (!IsBase64Url(b))
            {
                return false;
            }
        }

        return dots == 4;
    }

    /// <summary>Seals <paramref name="plaintext"/> for the server key <paramref name="serverKey"/> (public part) named <paramref name="keyId"/>.</summary>
    public static SealedRequest SealRequest(ReadOnlySpan<byte> plaintext, ECDiffieHellman serverKey, string keyId)
    {
        ArgumentNullException.ThrowIfNull(serverKey);
        using var ephemeral = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        var z = ephemeral.DeriveRawSecretAgreement(serverKey.PublicKey);
        try
        {
            var q = ephemeral.ExportParameters(false).Q;
            var header = Header(writer =>
            {
                writer.WriteString("alg", "ECDH-ES");
                writer.WriteString("enc", Enc);
                writer.WriteString("kid", keyId);
                writer.WriteStartObject("epk");
                writer.WriteString("kty", "EC");
                writer.WriteString("crv", "P-256");
                writer.WriteString("x", Base64Url.Encode(q.X!));
                writer.WriteString("y", Base64Url.Encode(q.Y!));
                writer.WriteEndObject();
            });
            var contentKey = ConcatKdf(z, Enc, string.Empty, string.Empty, 256);
            var responseKey = ConcatKdf(z, Enc, ResponseKeyLabel, string.Empty, 256);
            return new SealedRequest(Seal(header, contentKey, plaintext), responseKey);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(z);
        }
    }

    /// <summary>
    /// Opens a sealed request with the server key its <c>kid</c> names. Returns false with a one-line reason when the
    /// envelope is malformed, names an unknown key, or fails authentication.
    /// </summary>
    public static bool TryOpenRequest(ReadOnlySpan<byte> compact, Func<string, ECDiffieHellman?> keyById, out byte[] plaintext, out byte[] responseKey, out string error)
    {
        plaintext = [];
        responseKey = [];
        if (!TrySplit(compact, out var parts, out error))
        {
            return false;
        }

        if (parts[1].Length != 0)
        {
            error = "ECDH-ES envelopes carry no encrypted key";
            return false;
        }

        string? kid;
        ECParameters epk;
        try
        {
            using var header = JsonDocument.Parse(Base64Url.Decode(parts[0]));
            var root = header.RootElement;
            if (Text(root, "alg") != "ECDH-ES" || Text(root, "enc") != Enc)
            {
                error = "only alg ECDH-ES with enc A256GCM is accepted";
                return false;
            }

            kid = Text(root, "kid");
            if (!root.TryGetProperty("epk", out var key) || key.ValueKind != JsonValueKind.Object || Text(key, "kty") != "EC" || Text(key, "crv") != "P-256")
            {
                error = "the header lacks a P-256 epk";
                return false;
            }

            epk = new ECParameters
            {
                Curve = ECCurve.NamedCurves.nistP256,
                Q = new ECPoint { X = Base64Url.Decode(Text(key, "x") ?? string.Empty), Y = Base64Url.Decode(Text(key, "y") ?? string.Empty) },
            };
        }
        catch (Exception ex) when (ex is JsonException or FormatException)
        {
            error = "the protected header is not valid base64url JSON";
            return false;
        }

        var serverKey = kid is null ? null : keyById(kid);
        if (serverKey is null)
        {
            error = $"unknown encryption key '{kid}'; fetch the server's current keys";
            return false;
        }

        byte[] z;
        try
        {
            using var sender = ECDiffieHellman.Create(epk);
            z = serverKey.DeriveRawSecretAgreement(sender.PublicKey);
        }
        catch (CryptographicException)
        {
            error = "the epk is not a valid P-256 public key";
            return false;
        }

        try
        {
            var contentKey = ConcatKdf(z, Enc, string.Empty, string.Empty, 256);
            if (!TryUnseal(parts, contentKey, out plaintext, out error))
            {
                return false;
            }

            responseKey = ConcatKdf(z, Enc, ResponseKeyLabel, string.Empty, 256);
            return true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(z);
        }
    }

    /// <summary>Seals an answer with the response key of its request; <paramref name="requestId"/> travels in the header.</summary>
    public static string SealResponse(ReadOnlySpan<byte> plaintext, byte[] responseKey, string? requestId)
    {
        var header = Header(writer =>
        {
            writer.WriteString("alg", "dir");
            writer.WriteString("enc", Enc);
            if (requestId is not null)
            {
                writer.WriteString("rid", requestId);
            }
        });
        return Seal(header, responseKey, plaintext);
    }

    /// <summary>Opens a sealed answer with the response key of its request.</summary>
    public static bool TryOpenResponse(ReadOnlySpan<byte> compact, byte[] responseKey, out byte[] plaintext, out string error)
    {
        plaintext = [];
        if (!TrySplit(compact, out var parts, out error))
        {
            return false;
        }

        try
        {
            using var header = JsonDocument.Parse(Base64Url.Decode(parts[0]));
            if (Text(header.RootElement, "alg") != "dir" || Text(header.RootElement, "enc") != Enc)
            {
                error = "only alg dir with enc A256GCM is accepted for answers";
                return false;
            }
        }
        catch (Exception ex) when (ex is JsonException or FormatException)
        {
            error = "the protected header is not valid base64url JSON";
            return false;
        }

        return TryUnseal(parts, responseKey, out plaintext, out error);
    }

    /// <summary>Reads the <c>rid</c> (request ID) from an answer's protected header without decrypting it.</summary>
    public static string? ReadResponseRequestId(ReadOnlySpan<byte> compact)
    {
        var dot = compact.IndexOf((byte)'.');
        if (dot <= 0)
        {
            return null;
        }

        try
        {
            using var header = JsonDocument.Parse(Base64Url.Decode(Encoding.ASCII.GetString(compact[..dot])));
            return Text(header.RootElement, "rid");
        }
        catch (Exception ex) when (ex is JsonException or FormatException)
        {
            return null;
        }
    }

    /// <summary>
    /// Concat KDF (NIST SP 800-56A §5.8.1, as profiled by RFC 7518 §4.6.2) with SHA-256: the key of
    /// <paramref name="keyBits"/> bits derived from the shared secret <paramref name="z"/>.
    /// </summary>
    internal static byte[] ConcatKdf(byte[] z, string algorithmId, string partyUInfo, string partyVInfo, int keyBits)
    {
        var otherInfo = new List<byte>();
        foreach (var field in new[] { algorithmId, partyUInfo, partyVInfo })
        {
            var bytes = Encoding.UTF8.GetBytes(field);
            otherInfo.AddRange(BigEndian((uint)bytes.Length));
            otherInfo.AddRange(bytes);
        }

        otherInfo.AddRange(BigEndian((uint)keyBits));
        var key = new byte[keyBits / 8];
        var produced = 0;
        for (uint counter = 1; produced < key.Length; counter++)
        {
            var round = SHA256.HashData([.. BigEndian(counter), .. z, .. otherInfo]);
            var take = Math.Min(round.Length, key.Length - produced);
            round.AsSpan(0, take).CopyTo(key.AsSpan(produced));
            produced += take;
        }

        return key;
    }

    private static byte[] BigEndian(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return bytes;
    }

    private static string Seal(string protectedHeader, byte[] key, ReadOnlySpan<byte> plaintext)
    {
        var iv = RandomNumberGenerator.GetBytes(IvSize);
        var ciphertext = new byte[plaintext.Length];
        var tag = new byte[TagSize];
        using (var aes = new AesGcm(key, TagSize))
        {
            aes.Encrypt(iv, plaintext, ciphertext, tag, Encoding.ASCII.GetBytes(protectedHeader));
        }

        return $"{protectedHeader}..{Base64Url.Encode(iv)}.{Base64Url.Encode(ciphertext)}.{Base64Url.Encode(tag)}";
    }

    private static bool TryUnseal(string[] parts, byte[] key, out byte[] plaintext, out string error)
    {
        plaintext = [];
        byte[] iv, ciphertext, tag;
        try
        {
            iv = Base64Url.Decode(parts[2]);
            ciphertext = Base64Url.Decode(parts[3]);
            tag = Base64Url.Decode(parts[4]);
        }
        catch (FormatException)
        {
            error = "the envelope is not valid base64url";
            return false;
        }

        if (iv.Length != IvSize || tag.Length != TagSize)
        {
            error = "the envelope needs a 96-bit IV and a 128-bit tag";
            return false;
        }

        var output = new byte[ciphertext.Length];
        try
        {
            using var aes = new AesGcm(key, TagSize);
            aes.Decrypt(iv, ciphertext, tag, output, Encoding.ASCII.GetBytes(parts[0]));
        }
        catch (AuthenticationTagMismatchException)
        {
            error = "the envelope failed authentication (tampered, or sealed for another key)";
            return false;
        }

        plaintext = output;
        error = string.Empty;
        return true;
    }

    private static bool TrySplit(ReadOnlySpan<byte> compact, out string[] parts, out string error)
    {
        parts = [];
        if (!LooksLikeJwe(compact))
        {
            error = "not a JWE compact serialisation";
            return false;
        }

        parts = Encoding.ASCII.GetString(compact).Split('.');
        error = string.Empty;
        return true;
    }

    private static string Header(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            write(writer);
            writer.WriteEndObject();
        }

        return Base64Url.Encode(buffer.ToArray());
    }

    private static string? Text(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static bool IsBase64Url(byte b) =>
        b is (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'a' and <= (byte)'z') or (>= (byte)'0' and <= (byte)'9') or (byte)'-' or (byte)'_';
}
