using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Server.Domain;
using Enroll.Server.ProvisioningTokens;
using Enroll.Server.Registry;
using Enroll.Server.Tokens;
using Enroll.Server.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Handlers;

/// <summary>
/// Handles <c>enroll/v1/register</c> (SPEC §2.1): checks the credential, creates or updates the device, and answers
/// with the Device ID and a fresh access token.
/// </summary>
internal sealed class RegistrationHandler : IRequestHandler<RegistrationRequest, RegistrationResponse>
{
    /// <summary>Longest accepted device name.</summary>
    public const int MaxNameLength = 256;

    /// <summary>Most metadata entries accepted.</summary>
    public const int MaxMetadataEntries = 128;

    /// <summary>Signatures one registration makes at most when concurrent writers keep changing its device.</summary>
    private const int MaxRegistrationAttempts = 4;

    private readonly IDeviceStore _devices;
    private readonly IOperationStore _operations;
    private readonly ProvisioningTokenService _provisioningTokens;
    private readonly RegistrationTokenService _registrationTokens;
    private readonly TokenIssuer _issuer;
    private readonly TimeOrderedId _ids;
    private readonly EnrollServerOptions _options;
    private readonly ILogger<RegistrationHandler> _logger;
    private readonly IBrokerCredentials _brokerCredentials;
    private readonly Http.ConsoleApi.ConsoleFeed _feed;

    public RegistrationHandler(
        IDeviceStore devices,
        IOperationStore operations,
        ProvisioningTokenService provisioningTokens,
        RegistrationTokenService registrationTokens,
        TokenIssuer issuer,
        TimeOrderedId ids,
        IOptions<EnrollServerOptions> options,
        ILogger<RegistrationHandler> logger,
        IBrokerCredentials brokerCredentials,
        Http.ConsoleApi.ConsoleFeed feed)
    {
        _feed = feed;
        _brokerCredentials = brokerCredentials;
        _logger = logger;
        _devices = devices;
        _operations = operations;
        _provisioningTokens = provisioningTokens;
        _registrationTokens = registrationTokens;
        _issuer = issuer;
        _ids = ids;
        _options = options.Value;
    }


    public async Task<RegistrationResponse> HandleAsync(RegistrationRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        var clientId = request.ClientId!;
        ValidateShape(request);

        var (orgId, provisioningToken, holder) = await AuthenticateAsync(request, context, cancellationToken).ConfigureAwait(false);
        var deviceId = request.DeviceId ?? holder?.Device.DeviceId;
        var outcome = await RegisterAsync(request, context, orgId, clientId, deviceId, provisioningToken, signRegistrationToken: holder is null, cancellationToken).ConfigureAwait(false);
        var registrationToken = outcome.Token;

        var device = outcome.Result switch
        {
            RegisterDeviceResult.Created or RegisterDeviceResult.Updated => outcome.Device!,
            RegisterDeviceResult.NotFound => throw new RejectedException(ErrorCodes.NotFound, $"device '{deviceId}' is not registered"),
            RegisterDeviceResult.OtherClient => throw new RejectedException(ErrorCodes.Forbidden, $"device '{deviceId}' belongs to another client"),
            RegisterDeviceResult.Revoked => throw new RejectedException(ErrorCodes.Forbidden, $"device '{outcome.Device!.DeviceId}' is revoked"),
            RegisterDeviceResult.TokenUsedUp => throw new RejectedException(ErrorCodes.Unauthorized, "the provisioning token has no uses left"),
            RegisterDeviceResult.Stale => throw new RejectedException(ErrorCodes.Unavailable, "the device changed during registration; send the request again"),
            _ => throw new InvalidOperationException($"unexpected registration result {outcome.Result}"),
        };

        Log.DeviceRegistered(_logger, device.DeviceId, outcome.Result == RegisterDeviceResult.Created ? "new" : "again", device.ClientId, device.OrgId);
        await _feed.AnnounceAsync(Http.ConsoleApi.ConsoleFeed.Devices, device.DeviceId).ConfigureAwait(false);
        var access = _issuer.IssueAccessToken(device);
        // Before the answer leaves: the device's first connection with this token must already work on the broker.
        await _brokerCredentials.DeviceTokenIssuedAsync(device.DeviceId, device.ClientId, access.Token, access.ExpiresAt, cancellationToken).ConfigureAwait(false);
        var response = new RegistrationResponse
        {
            DeviceId = device.DeviceId,
            JwtToken = access.Token,
            ExpiresAt = access.ExpiresAt,
            RequestId = request.RequestId,
        };

        if (holder is not null)
        {
            // First use of a token from `complete` finishes its provisioning operation.
            await _operations.CompleteOperationByTokenAsync(holder.TokenId, context.ReceivedAt, cancellationToken).ConfigureAwait(false);
            return _registrationTokens.IsExpiring(holder) ? response with { RefreshRegistrationToken = true } : response;
        }

        var registration = registrationToken!;
        return response with { RegistrationToken = registration.Token, RegistrationTokenExpiresAt = registration.ExpiresAt };
    }

    /// <summary>
    /// Registers with the registry. Registered with a Provisioning Token (or a certificate, or openly), the device gets a
    /// Registration Token for renewals and refreshes, recorded in the same commit as the device: it is signed first, for
    /// the device this request will register (the named one, else the client's, else a new one), and signed again for
    /// the device as the registry now has it when a concurrent writer changed that in the meantime (another request of
    /// the same client created its device first, or the device's tokens were revoked).
    /// </summary>
    private async Task<(RegisterDeviceResult Result, DeviceRecord? Device, IssuedToken? Token)> RegisterAsync(
        RegistrationRequest request, RequestContext context, string orgId, string clientId, string? deviceId, ProvisioningTokenRecord? provisioningToken,
        bool signRegistrationToken, CancellationToken cancellationToken)
    {
        var newDeviceId = NewDeviceId();
        var command = new RegisterDeviceCommand
        {
            OrgId = orgId,
            ClientId = clientId,
            DeviceId = deviceId,
            NewDeviceId = newDeviceId,
            Name = request.DeviceName,
            MetadataJson = request.Metadata is null ? null : JsonSerializer.Serialize(request.Metadata, RegistryJsonContext.Default.DictionaryStringJsonElement),
            ProvisioningTokenId = provisioningToken?.Id,
            Now = context.ReceivedAt,
        };
        if (!signRegistrationToken)
        {
            var plain = await _devices.RegisterDeviceAsync(command, cancellationToken).ConfigureAwait(false);
            return (plain.Result, plain.Device, null);
        }

        var known = deviceId is not null
            ? await _devices.FindDeviceAsync(deviceId, cancellationToken).ConfigureAwait(false)
            : await _devices.FindDeviceByClientAsync(orgId, clientId, cancellationToken).ConfigureAwait(false);
        for (var attempt = 1; ; attempt++)
        {
            // The token names the request's organisation and client: the registry records it only for a device of theirs.
            var subject = new TokenSubject(known?.DeviceId ?? deviceId ?? newDeviceId, orgId, clientId, known?.TokensValidAfter);
            var (token, record) = _registrationTokens.IssueForRegistration(subject, provisioningToken?.RegistrationTokenLifetime);
            var outcome = await _devices.RegisterDeviceAsync(command with { RegistrationToken = record }, cancellationToken).ConfigureAwait(false);
            if (outcome.Result != RegisterDeviceResult.Stale || attempt == MaxRegistrationAttempts)
            {
                return (outcome.Result, outcome.Device, token);
            }

            known = outcome.Device;
        }
    }

    private static void ValidateShape(RegistrationRequest request)
    {
        if (request.OrgId is not null && !EnrollIdentifiers.IsValid(request.OrgId))
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, $"org_id must be {EnrollIdentifiers.Rule}");
        }

        if (request.DeviceName is { Length: > MaxNameLength })
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, $"device_name is longer than {MaxNameLength} characters");
        }

        if (request.Metadata is { Count: > MaxMetadataEntries })
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, $"metadata has more than {MaxMetadataEntries} entries");
        }

        if (request.ProvisioningToken is not null && request.RegistrationToken is not null)
        {
            throw new RejectedException(ErrorCodes.InvalidRequest, "send either provisioning_token or registration_token, not both");
        }
    }

    /// <summary>Returns the organisation the device joins and the credential that allowed it.</summary>
    private async Task<(string OrgId, ProvisioningTokenRecord? ProvisioningToken, RegistrationTokenHolder? Holder)> AuthenticateAsync(
        RegistrationRequest request, RequestContext context, CancellationToken cancellationToken)
    {
        if (request.RegistrationToken is { } registrationToken)
        {
            var holder = await _registrationTokens.AuthenticateAsync(registrationToken, request.DeviceId, request.ClientId!, context.SenderAddress, cancellationToken).ConfigureAwait(false);
            RejectedException.ThrowUnlessSameOrg(request.OrgId, holder.Device.OrgId);
            return (holder.Device.OrgId, null, holder);
        }

        if (request.ProvisioningToken is { } provisioningToken)
        {
            var (result, record) = await _provisioningTokens.VerifyLimitedAsync(provisioningToken, request.ClientId!, context.SenderAddress, cancellationToken).ConfigureAwait(false);
            // Used up passes: re-registering an existing device takes no use; the registry refuses only a new device.
            result.RejectUnlessUsable();

            if (!record!.AutoApprove)
            {
                throw new RejectedException(ErrorCodes.ApprovalRequired,
                    $"this provisioning token needs an operator's approval: start a provisioning operation on {EnrollTopics.ProvisioningInit}");
            }

            RejectedException.ThrowUnlessSameOrg(request.OrgId, record.OrgId);
            return (record.OrgId, record, null);
        }

        if (context.SenderCertificate is { } certificate && string.Equals(certificate.ClientId, request.ClientId, StringComparison.Ordinal))
        {
            // mTLS: a certificate from the configured CA, issued to this very client ID, stands in for a Provisioning Token.
            RejectedException.ThrowUnlessSameOrg(request.OrgId, certificate.OrgId);
            return (certificate.OrgId, null, null);
        }

        if (_options.OpenRegistration)
        {
            return (request.OrgId ?? _options.OpenRegistrationOrg, null, null);
        }

        throw new RejectedException(ErrorCodes.Unauthorized, "a provisioning_token or registration_token is required");
    }

    private string NewDeviceId() => "dev_" + _ids.Next();
}
