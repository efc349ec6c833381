using System.Collections.Frozen;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;

namespace Enroll.Protocol.Requests;

/// <summary>
/// The request types of protocol v1, declared once. A new request type is a line here (with its message records in
/// <c>Messages/</c> and their entries in <see cref="EnrollJsonContext"/>); the server refuses to start without exactly
/// one handler for each, and the topic lists and access rules follow from this table.
/// </summary>
public static class EnrollRequests
{
    /// <summary>Registration (SPEC §2.1).</summary>
    public static EnrollRequest<RegistrationRequest, RegistrationResponse> Register { get; } = new(
        EnrollTopics.Register, "registration", EnrollJsonContext.Default.RegistrationRequest, EnrollJsonContext.Default.RegistrationResponse);

    /// <summary>Starts a provisioning operation (SPEC §2.2).</summary>
    public static EnrollRequest<ProvisioningInitRequest, ProvisioningInitResponse> ProvisioningInit { get; } = new(
        EnrollTopics.ProvisioningInit, "provisioning_init", EnrollJsonContext.Default.ProvisioningInitRequest, EnrollJsonContext.Default.ProvisioningInitResponse);

    /// <summary>Asks for the outcome of a provisioning operation (SPEC §2.2).</summary>
    public static EnrollRequest<ProvisioningCompleteRequest, ProvisioningCompleteResponse> ProvisioningComplete { get; } = new(
        EnrollTopics.ProvisioningComplete, "provisioning_complete", EnrollJsonContext.Default.ProvisioningCompleteRequest, EnrollJsonContext.Default.ProvisioningCompleteResponse);

    /// <summary>Exchanges a Registration Token for a new one (SPEC §2.3).</summary>
    public static EnrollRequest<TokenRefreshRequest, TokenRefreshResponse> TokensRefresh { get; } = new(
        EnrollTopics.TokensRefresh, "token_refresh", EnrollJsonContext.Default.TokenRefreshRequest, EnrollJsonContext.Default.TokenRefreshResponse);

    /// <summary>Every request type, in the order of the protocol description.</summary>
    public static IReadOnlyList<EnrollRequest> All { get; } = [Register, ProvisioningInit, ProvisioningComplete, TokensRefresh];

    private static readonly FrozenDictionary<string, EnrollRequest> ByTopic = All.ToFrozenDictionary(r => r.Topic, StringComparer.Ordinal);

    /// <summary>The request type published to <paramref name="topic"/>, if any.</summary>
    public static bool TryFind(string topic, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out EnrollRequest? request) =>
        ByTopic.TryGetValue(topic, out request);
}
