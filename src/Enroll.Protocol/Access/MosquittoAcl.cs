using System.Text;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;

namespace Enroll.Protocol.Access;

/// <summary>
/// Writes the Mosquitto 2 <c>acl_file</c> for an external broker from the request table: the same rules as Enroll's
/// embedded broker (SPEC §4.1). The repository's <c>deploy/mosquitto/enroll.acl</c> is this text for the default server
/// user; a test keeps the two equal.
/// </summary>
public static class MosquittoAcl
{
    /// <summary>The server's broker user name unless configured otherwise (<c>--broker-username</c>).</summary>
    public const string DefaultServerUser = "enroll-server";

    /// <summary>Returns the ACL, with <paramref name="serverUser"/> as the server's own user. Lines end with <c>\n</c>.</summary>
    public static string Render(string serverUser = DefaultServerUser)
    {
        ArgumentException.ThrowIfNullOrEmpty(serverUser);
        if (serverUser.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)) || serverUser.Contains('%', StringComparison.Ordinal))
        {
            throw new ArgumentException("the server's user name cannot contain white space, control characters or '%'", nameof(serverUser));
        }

        var acl = new StringBuilder();
        acl.Append("# Enroll access control for Mosquitto 2 (acl_file): the same rules as Enroll's embedded broker.\n");
        acl.Append("# Generated from Enroll.Protocol's request table by Enroll.Protocol.Access.MosquittoAcl.Render().\n");
        acl.Append("# Anything not granted here is refused: a forbidden PUBLISH gets PUBACK 0x87 (MQTT 5), a forbidden\n");
        acl.Append("# subscription is acknowledged but delivers nothing.\n");
        acl.Append('\n');
        acl.Append("# Every client, signed in or not: send requests, read the server's public keys, read its own client topics.\n");
        foreach (var request in EnrollRequests.Open)
        {
            acl.Append("pattern write ").Append(request.Topic).Append('\n');
        }

        acl.Append("pattern read ").Append(EnrollTopics.ServerKeys).Append('\n');
        acl.Append("pattern read ").Append(EnrollTopics.ClientNamespace("%c")).Append("#\n");
        acl.Append('\n');
        acl.Append("# A device signed in with username = its Device ID owns its namespace.\n");
        acl.Append("pattern readwrite ").Append(EnrollTopics.DeviceNamespace("%u")).Append("#\n");
        acl.Append('\n');
        acl.Append("# The Enroll server reads the requests (as shared subscriptions) and answers everywhere under enroll/v1/.\n");
        acl.Append("user ").Append(serverUser).Append('\n');
        acl.Append("topic readwrite ").Append(EnrollTopics.Root).Append("#\n");
        acl.Append("topic read $share/enroll/").Append(EnrollTopics.Root).Append("#\n");
        return acl.ToString();
    }
}
