using System.Text.Json;
using Enroll.Protocol.Admin;
using Enroll.Protocol.Messages;
using Enroll.Server.Provisioning;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Http;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>
/// <c>POST /api/provisioning-operations/bulk</c>: approves or rejects every pending operation a filter matches, each
/// through <see cref="OperationService.DecideAsync"/> (as a single decision, so every device is answered), or with
/// <c>dry_run</c> only counts them. At most <see cref="MaxDecisions"/> per call.
/// </summary>
internal static class BulkDecisionApi
{
    /// <summary>The most operations one bulk decision covers; a filter matching more is refused (narrow it, or repeat).</summary>
    public const int MaxDecisions = 10_000;

    private static readonly ConsoleJsonContext StrictJson = new(new JsonSerializerOptions(ConsoleJsonContext.Default.Options)
    {
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    });

    public static async Task<IResult> DecideAsync(HttpContext http, OperationService operations, CancellationToken cancellationToken)
    {
        BulkDecisionRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync(http.Request.Body, StrictJson.BulkDecisionRequest, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid body", $"expected {{\"action\": \"approve\"|\"reject\", \"filter\": {{\"org_id\", \"provisioning_token_id\", \"metadata\"}}, \"reason\", \"dry_run\"}} ({ex.Message})");
        }

        if (request is null || request.Action is not ("approve" or "reject"))
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid action", "action must be approve or reject");
        }

        if (request.Filter.OrgId is null && request.Filter.ProvisioningTokenId is null && request.Filter.Metadata is not { Count: > 0 })
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid filter", "give at least one of filter.org_id, filter.provisioning_token_id, filter.metadata: a bulk decision never covers every operation by default");
        }

        if (request.Reason is { Length: > 1024 })
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid reason", "reason is longer than 1024 characters");
        }

        var pending = await operations.ListAsync(OperationStatus.Pending, OperationFilters.MaxScanned, cancellationToken).ConfigureAwait(false);
        var matched = pending.Where(o => OperationFilters.Matches(o, request.Filter)).ToList();
        if (matched.Count > MaxDecisions)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "too many operations", $"the filter matches {matched.Count} pending operations; a bulk decision covers at most {MaxDecisions:N0} per call (narrow the filter, or repeat the call)");
        }

        var decided = new List<string>();
        if (!request.DryRun)
        {
            var approve = request.Action == "approve";
            // As a single decision records it (the audit log names who made the call).
            const string by = "operator";
            foreach (var operation in matched)
            {
                // Each decision is its own commit: stopping half-way (the caller left) leaves the rest pending, as they were.
                var outcome = await operations.DecideAsync(operation.OperationId, approve, request.Reason, by, push: true, CancellationToken.None).ConfigureAwait(false);
                if (outcome.Result == DecideOperationResult.Decided)
                {
                    decided.Add(operation.OperationId);
                }

                if (http.RequestAborted.IsCancellationRequested)
                {
                    break;
                }
            }
        }

        AuditDetail.SetAction(http, request.DryRun ? "operation.bulk_preview" : "operation.bulk_" + request.Action);
        var summary = request.DryRun ? $"dry run: matched {matched.Count}" : $"{request.Action}: matched {matched.Count}, decided {decided.Count}";
        AuditDetail.Set(http, request.Reason is { Length: > 0 } reason ? $"{summary}; reason: {reason}" : summary);
        return TypedResults.Json(
            new BulkDecisionResult { Matched = matched.Count, Decided = decided.Count, OperationIds = request.DryRun ? matched.Select(o => o.OperationId).ToList() : decided },
            ConsoleJsonContext.Default.BulkDecisionResult);
    }
}
