namespace Enroll.Protocol.Encryption;

/// <summary>base64url without padding (RFC 4648 §5), as JOSE uses it.</summary>
internal static class Base64Url
{
    public static string Encode(ReadOnlySpan<byte> data) => System.Buffers.Text.Base64Url.EncodeToString(data);

    public static byte[] Decode(string text) => System.Buffers.Text.Base64Url.DecodeFromChars(text);
}
