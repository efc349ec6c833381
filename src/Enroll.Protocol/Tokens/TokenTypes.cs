namespace Enroll.Protocol;

/// <summary>
/// The <c>typ</c> values of the JWTs the server issues (explicit typing, RFC 8725 §3.11). A token of one type is never
/// accepted as another.
/// </summary>
public static class TokenTypes
{
    /// <summary>The access token (<c>jwt_token</c>): the device's MQTT password for data traffic.</summary>
    public const string Access = "enroll-access+jwt";

    /// <summary>The Registration Token: the per-device credential used to register and refresh.</summary>
    public const string Registration = "enroll-registration+jwt";
}

/// <summary>The audiences (<c>aud</c>) of the tokens the server issues.</summary>
public static class TokenAudiences
{
    /// <summary>Audience of access tokens: the MQTT broker.</summary>
    public const string Broker = "enroll-broker";

    /// <summary>Audience of Registration Tokens: the Enroll request handlers.</summary>
    public const string Registration = "enroll-registration";
}

/// <summary>Defaults shared by the server and devices.</summary>
public static class ProtocolDefaults
{
    /// <summary>The issuer (<c>iss</c>) the server writes into tokens unless configured otherwise.</summary>
    public const string Issuer = "enroll";
}
