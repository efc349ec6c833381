namespace Enroll.Protocol.Messages;

/// <summary>
/// The server's public signing keys as a JSON Web Key Set (RFC 7517), served at <c>/.well-known/jwks.json</c> and as
/// a retained message on <c>enroll/v1/server/keys</c>.
/// </summary>
public sealed record ServerKeySet(IReadOnlyList<ServerKey> Keys);

/// <summary>One EC P-256 public key (RFC 7518 §6.2).</summary>
public sealed record ServerKey
{
    /// <summary>Key type: <c>EC</c>.</summary>
    public required string Kty { get; init; }

    /// <summary>Curve: <c>P-256</c>.</summary>
    public required string Crv { get; init; }

    /// <summary>The x coordinate, base64url.</summary>
    public required string X { get; init; }

    /// <summary>The y coordinate, base64url.</summary>
    public required string Y { get; init; }

    /// <summary>The key ID tokens name in their <c>kid</c> header.</summary>
    public required string Kid { get; init; }

    /// <summary><c>sig</c> for signing keys, <c>enc</c> for encryption keys.</summary>
    public required string Use { get; init; }

    /// <summary><c>ES256</c> for signing keys, <c>ECDH-ES</c> for encryption keys.</summary>
    public required string Alg { get; init; }
}
