using Enroll.Protocol.Access;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;
using Enroll.Server.Broker;
using Enroll.Testing;

namespace Enroll.Server.Tests.Broker;

/// <summary>
/// The Mosquitto ACL generated from the request table grants what the embedded broker's <see cref="AccessPolicy"/>
/// grants, topic by topic, and is the file the repository ships. The ACL is read here with Mosquitto's own rules
/// (<c>pattern</c> lines for everyone with <c>%c</c> = client ID and <c>%u</c> = user name, <c>topic</c> lines for the
/// <c>user</c> above them, <c>+</c> and <c>#</c> wildcards); a real Mosquitto runs it in <see cref="MosquittoAclTests"/>.
/// </summary>
public sealed class MosquittoAclAgreementTests
{
    private const string ClientA = "client-a";
    private const string DeviceA = "dev-a";

    /// <summary>Who asks (client ID, Device ID = user name or none), what, on which concrete topic.</summary>
    public static TheoryData<string, string?, bool, string> Cases()
    {
        var cases = new TheoryData<string, string?, bool, string>();
        foreach (var deviceId in new[] { null, DeviceA })
        {
            foreach (var request in EnrollRequests.All)
            {
                cases.Add(ClientA, deviceId, true, request.Topic); // anyone may send every request
                cases.Add(ClientA, deviceId, false, request.Topic); // nobody reads other clients' requests
            }

            cases.Add(ClientA, deviceId, false, EnrollTopics.ServerKeys);
            cases.Add(ClientA, deviceId, true, EnrollTopics.ServerKeys);
            cases.Add(ClientA, deviceId, false, EnrollTopics.ClientResponses(ClientA));
            cases.Add(ClientA, deviceId, false, EnrollTopics.ClientResponses("client-b"));
            cases.Add(ClientA, deviceId, true, EnrollTopics.ClientResponses("client-b"));
            cases.Add(ClientA, deviceId, false, EnrollTopics.DeviceResponses(DeviceA));
            cases.Add(ClientA, deviceId, true, EnrollTopics.DeviceResponses(DeviceA));
            cases.Add(ClientA, deviceId, false, EnrollTopics.DeviceResponses("dev-b"));
            cases.Add(ClientA, deviceId, true, EnrollTopics.DeviceResponses("dev-b"));
            cases.Add(ClientA, deviceId, true, EnrollTopics.DeviceMessages(DeviceA, "telemetry"));
            cases.Add(ClientA, deviceId, false, EnrollTopics.DeviceMessages(DeviceA, "telemetry"));
            cases.Add(ClientA, deviceId, true, EnrollTopics.DeviceMessages("dev-b", "telemetry"));
            cases.Add(ClientA, deviceId, false, EnrollTopics.DeviceMessages("dev-b", "telemetry"));
            cases.Add(ClientA, deviceId, true, EnrollTopics.DeviceNamespace("dev-b") + "commands");
            cases.Add(ClientA, deviceId, true, "enroll/v1/other");
            cases.Add(ClientA, deviceId, false, "enroll/v1/other");
            cases.Add(ClientA, deviceId, true, "elsewhere/topic");
            cases.Add(ClientA, deviceId, false, "$SYS/broker/uptime");
        }

        return cases;
    }

    [Fact]
    public void ShippedAclFile_IsTheGeneratedAcl()
    {
        var shipped = File.ReadAllText(MosquittoBroker.RepositoryFile("deploy/mosquitto/enroll.acl"));

        Assert.Equal(MosquittoAcl.Render(), shipped);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GeneratedAcl_AgreesWithTheEmbeddedBroker(string clientId, string? deviceId, bool publish, string topic)
    {
        var acl = Acl.Parse(MosquittoAcl.Render());
        var embedded = publish ? AccessPolicy.CanPublish(topic, clientId, deviceId) : AccessPolicy.CanSubscribe(topic, clientId, deviceId);

        Assert.Equal(embedded, acl.Allows(clientId, deviceId, publish ? Access.Write : Access.Read, topic));
    }

    [Fact]
    public void GeneratedAcl_DiffersFromTheEmbeddedBrokerOnlyInClientsPublishingToTheirOwnTopics()
    {
        // The embedded broker lets a client publish into enroll/v1/clients/{its ID}/; nothing needs to, and the ACL does not.
        var acl = Acl.Parse(MosquittoAcl.Render());
        var ownClientTopic = EnrollTopics.ClientResponses(ClientA);

        Assert.True(AccessPolicy.CanPublish(ownClientTopic, ClientA, null));
        Assert.False(acl.Allows(ClientA, null, Access.Write, ownClientTopic));
    }

    [Fact]
    public void GeneratedAcl_LetsTheServersOwnUserReadEveryRequestAndAnswerEveryone()
    {
        var acl = Acl.Parse(MosquittoAcl.Render("enroll-prod"));

        Assert.All(EnrollRequests.All, r => Assert.True(acl.Allows("server-1", "enroll-prod", Access.Read, r.Topic), r.Topic));
        Assert.True(acl.Allows("server-1", "enroll-prod", Access.Write, EnrollTopics.ClientResponses("anyone")));
        Assert.True(acl.Allows("server-1", "enroll-prod", Access.Write, EnrollTopics.DeviceResponses("dev-z")));
        Assert.False(acl.Allows("server-1", MosquittoAcl.DefaultServerUser, Access.Read, EnrollTopics.Register));
    }

    [Theory]
    [InlineData("")]
    [InlineData("two words")]
    [InlineData("line\nbreak")]
    [InlineData("%u")]
    public void Render_RefusesAServerUserThatWouldBreakTheFile(string user)
    {
        Assert.ThrowsAny<ArgumentException>(() => MosquittoAcl.Render(user));
    }

    [Flags]
    private enum Access
    {
        Read = 1,
        Write = 2,
    }

    private sealed record Rule(string? User, Access Access, string Filter, bool IsPattern);

    /// <summary>A Mosquitto acl_file, read the way Mosquitto reads it.</summary>
    private sealed class Acl(IReadOnlyList<Rule> rules)
    {
        public static Acl Parse(string text)
        {
            var rules = new List<Rule>();
            string? user = null;
            foreach (var raw in text.Split('\n'))
            {
                var line = raw.Trim();
                if (line.Length == 0 || line.StartsWith('#'))
                {
                    continue;
                }

                var parts = line.Split(' ', 3);
                switch (parts[0])
                {
                    case "user":
                        user = parts[1];
                        break;
                    case "topic" or "pattern":
                        var access = parts[1] switch
                        {
                            "read" => Access.Read,
                            "write" => Access.Write,
                            "readwrite" => Access.Read | Access.Write,
                            _ => throw new FormatException($"unknown access in '{line}'"),
                        };
                        rules.Add(new Rule(user, access, parts[2], parts[0] == "pattern"));
                        break;
                    default:
                        throw new FormatException($"a line Mosquitto's acl_file does not know: '{line}'");
                }
            }

            return new Acl(rules);
        }

        public bool Allows(string clientId, string? userName, Access access, string topic) => rules.Any(rule =>
            rule.Access.HasFlag(access)
            && (rule.IsPattern || string.Equals(rule.User, userName, StringComparison.Ordinal))
            && Expand(rule, clientId, userName) is { } filter
            && Matches(filter, topic));

        /// <summary>A pattern's filter for this client, or null when it names a user name the client has not got.</summary>
        private static string? Expand(Rule rule, string clientId, string? userName)
        {
            if (!rule.IsPattern)
            {
                return rule.Filter;
            }

            if (rule.Filter.Contains("%u", StringComparison.Ordinal) && userName is null)
            {
                return null;
            }

            return rule.Filter.Replace("%c", clientId, StringComparison.Ordinal).Replace("%u", userName, StringComparison.Ordinal);
        }

        private static bool Matches(string filter, string topic)
        {
            if (topic.StartsWith('$') && !filter.StartsWith('$'))
            {
                return false; // MQTT: wildcards at the start never match $-topics
            }

            var f = filter.Split('/');
            var t = topic.Split('/');
            for (var i = 0; i < f.Length; i++)
            {
                if (f[i] == "#")
                {
                    return true;
                }

                if (i >= t.Length || (f[i] != "+" && f[i] != t[i]))
                {
                    return false;
                }
            }

            return f.Length == t.Length;
        }
    }
}
