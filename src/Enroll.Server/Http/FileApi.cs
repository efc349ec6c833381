using System.Globalization;
using Enroll.Protocol.Admin;
using Enroll.Server.Files;
using Enroll.Server.Registry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Microsoft.Net.Http.Headers;

namespace Enroll.Server.Http;

/// <summary>
/// The files part of the admin API (SPEC §2.7; docs/files.md): the files devices uploaded — list, metadata, content
/// (streamed from the <see cref="IBlobStore"/>, with <c>ETag</c> = the SHA-256, conditional and range requests) and
/// delete — and the transfers under way. Behind the admin key like every <c>/api</c> route, with the same problem bodies.
/// </summary>
internal static partial class FileApi
{
    /// <summary>Default page of a file or transfer list.</summary>
    public const int DefaultPageSize = 100;

    private const string LoggerName = "Enroll.Server.Http.FileApi";

    public static void MapFileApi(this IEndpointRouteBuilder api)
    {
        api.MapGet("/files", ListAsync);
        api.MapGet("/files/{id}", GetAsync);
        api.MapGet("/files/{id}/content", ContentAsync);
        api.MapDelete("/files/{id}", DeleteAsync);
        api.MapGet("/transfers", ListTransfersAsync);
    }

    /// <summary>Files in the order they were stored; a full page carries <c>Link: &lt;/api/files?...after=&gt;; rel="next"</c>.</summary>
    private static async Task<IResult> ListAsync(string? device, string? limit, string? after, HttpContext http, IFileStore files, CancellationToken cancellationToken)
    {
        if (!TryPageSize(limit, out var count, out var problem))
        {
            return problem;
        }

        // A page after a file deleted since would mean the start or the end, depending on the store: say so instead.
        if (after is not null && await files.GetFileAsync(after, cancellationToken).ConfigureAwait(false) is null)
        {
            return AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid after", $"no file '{after}' (deleted since the previous page?); list again from the start");
        }

        var page = await files.ListFilesAsync(device, count, after, cancellationToken).ConfigureAwait(false);
        if (page.Count == count)
        {
            var query = string.Join('&', new[] { ("device", device), ("limit", limit), ("after", page[^1].FileId) }
                .Where(p => p.Item2 is not null)
                .Select(p => $"{p.Item1}={Uri.EscapeDataString(p.Item2!)}"));
            http.Response.Headers.Link = $"</api/files?{query}>; rel=\"next\"";
        }

        return TypedResults.Json(new ItemList<DeviceFileInfo>([.. page.Select(ToInfo)]), FileAdminJsonContext.Default.ItemListDeviceFileInfo);
    }

    private static async Task<IResult> GetAsync(string id, IFileStore files, CancellationToken cancellationToken) =>
        await files.GetFileAsync(id, cancellationToken).ConfigureAwait(false) is { } file
            ? TypedResults.Json(ToInfo(file), FileAdminJsonContext.Default.DeviceFileInfo)
            : NoFile(id);

    /// <summary>
    /// The file's bytes, streamed. ASP.NET's file result does the HTTP: <c>Content-Length</c>, <c>ETag</c> and
    /// <c>If-None-Match</c> (304), <c>Range</c> (206, or 416 when unsatisfiable) and <c>If-Range</c>, and
    /// <c>Content-Disposition: attachment</c> with the file's name.
    /// </summary>
    private static async Task<IResult> ContentAsync(string id, IFileStore files, [FromServices] IBlobStore blobs, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        if (await files.GetFileAsync(id, cancellationToken).ConfigureAwait(false) is not { } file)
        {
            return NoFile(id);
        }

        if (blobs.OpenRead(file.BlobKey) is not { } content)
        {
            LogContentMissing(loggers.CreateLogger(LoggerName), file.FileId, file.DeviceId, file.BlobKey);
            return AdminApi.Problem(StatusCodes.Status500InternalServerError, "content missing", $"the bytes of file '{id}' are not in the file store (the registry has its record); see the server log");
        }

        return TypedResults.Stream(
            content,
            file.ContentType ?? "application/octet-stream",
            file.Name,
            file.ReceivedAt,
            new EntityTagHeaderValue($"\"{file.Sha256}\""),
            enableRangeProcessing: true);
    }

    /// <summary>Deletes the record first (its bytes leave the device's quota at once), then the bytes.</summary>
    private static async Task<IResult> DeleteAsync(string id, IFileStore files, [FromServices] IBlobStore blobs, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        if (await files.DeleteFileAsync(id, cancellationToken).ConfigureAwait(false) is not { } file)
        {
            return NoFile(id);
        }

        var logger = loggers.CreateLogger(LoggerName);
        try
        {
            await blobs.DeleteAsync(file.BlobKey, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            // The file is gone for the API and the quota; only its bytes stay behind, which the log names for removal.
            LogContentNotDeleted(logger, file.FileId, file.BlobKey, ex.Message);
        }

        LogDeleted(logger, file.FileId, file.DeviceId, file.Name, file.Size);
        return TypedResults.Json(ToInfo(file), FileAdminJsonContext.Default.DeviceFileInfo);
    }

    /// <summary>Transfers the server is receiving, oldest start first, at most <c>limit</c>.</summary>
    private static async Task<IResult> ListTransfersAsync(string? device, string? limit, IFileStore files, CancellationToken cancellationToken)
    {
        if (!TryPageSize(limit, out var count, out var problem))
        {
            return problem;
        }

        var transfers = await files.ListReceivingTransfersAsync(device, count, cancellationToken).ConfigureAwait(false);
        return TypedResults.Json(new ItemList<TransferInfo>([.. transfers.Select(ToInfo)]), FileAdminJsonContext.Default.ItemListTransferInfo);
    }

    private static IResult NoFile(string id) => AdminApi.Problem(StatusCodes.Status404NotFound, "not found", $"no file '{id}'");

    private static bool TryPageSize(string? text, out int size, out IResult problem)
    {
        problem = null!;
        size = DefaultPageSize;
        if (text is null || (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out size) && size is >= 1 and <= AdminApi.MaxPageSize))
        {
            return true;
        }

        problem = AdminApi.Problem(StatusCodes.Status400BadRequest, "invalid limit", $"limit must be 1 to {AdminApi.MaxPageSize} (the largest page); follow the Link header's rel=\"next\" for more");
        return false;
    }

    internal static DeviceFileInfo ToInfo(StoredFileRecord file) => new()
    {
        FileId = file.FileId,
        DeviceId = file.DeviceId,
        Name = file.Name,
        ContentType = file.ContentType,
        Size = file.Size,
        Sha256 = file.Sha256,
        CreatedAt = file.CreatedAt,
        ReceivedAt = file.ReceivedAt,
        TransferId = file.TransferId,
    };

    internal static TransferInfo ToInfo(TransferRecord transfer) => new()
    {
        DeviceId = transfer.DeviceId,
        TransferId = transfer.TransferId,
        Kind = transfer.Kind,
        Name = transfer.Name,
        ContentType = transfer.ContentType,
        Size = transfer.Size,
        Received = transfer.Received,
        ChunkCount = transfer.ChunkCount,
        ChunkSize = transfer.ChunkSize,
        StartedAt = transfer.StartedAt,
        UpdatedAt = transfer.UpdatedAt,
    };

    [LoggerMessage(EventId = 1930, Level = LogLevel.Information, Message = "Deleted file {FileId} of device {DeviceId} ({Name}, {Size} bytes)")]
    private static partial void LogDeleted(ILogger logger, string fileId, string deviceId, string name, long size);

    [LoggerMessage(EventId = 1931, Level = LogLevel.Error, Message = "The bytes of file {FileId} of device {DeviceId} are missing from the file store (blob {BlobKey}); the registry still lists the file")]
    private static partial void LogContentMissing(ILogger logger, string fileId, string deviceId, string blobKey);

    [LoggerMessage(EventId = 1932, Level = LogLevel.Warning, Message = "Deleted file {FileId}, but its bytes (blob {BlobKey}) could not be removed from the file store: {Reason}")]
    private static partial void LogContentNotDeleted(ILogger logger, string fileId, string blobKey, string reason);
}
