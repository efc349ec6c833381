using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Enroll.Protocol.Admin;
using Enroll.Server.Files;
using Enroll.Server.Registry;
using Enroll.Server.Tests.Files;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Http;

/// <summary>
/// <c>/api/files</c> and <c>/api/transfers</c> on a real server: files stored through its own registry and blob store
/// (as the ingest stores them), then listed, read whole and in ranges, conditionally, and deleted.
/// </summary>
public sealed class FileApiTests(ITestOutputHelper output) : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(output);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private HttpClient Http => _server.Http;

    [Fact]
    public async Task ListFiles_ComeInTheOrderStored_InPagesLinkedByNext_AndByDevice()
    {
        var ids = new List<string>();
        for (var n = 0; n < 5; n++)
        {
            ids.Add(await _server.StoreFileInStoreAsync(n < 3 ? "dev-a" : "dev-b", $"log-{n}.txt", [(byte)n]));
        }

        using var first = await Http.GetAsync("/api/files?limit=2");
        var firstPage = await Items<DeviceFileInfo>(first);
        var next = NextLink(first);
        using var second = await Http.GetAsync(next);
        var secondPage = await Items<DeviceFileInfo>(second);
        using var third = await Http.GetAsync(NextLink(second));
        var thirdPage = await Items<DeviceFileInfo>(third);
        var deviceB = await Http.GetFromJsonAsync("/api/files?device=dev-b", FileAdminJsonContext.Default.ItemListDeviceFileInfo);

        Assert.Equal(ids[..2], firstPage.Select(f => f.FileId!));
        Assert.Equal($"/api/files?limit=2&after={ids[1]}", next);
        Assert.Equal(ids[2..4], secondPage.Select(f => f.FileId!));
        Assert.Equal(ids[4..], thirdPage.Select(f => f.FileId!));
        Assert.False(third.Headers.Contains("Link"));
        Assert.Equal(ids[3..], deviceB!.Items.Select(f => f.FileId!));
        Assert.Equal(["log-3.txt", "log-4.txt"], deviceB.Items.Select(f => f.Name!));
    }

    [Fact]
    public async Task ListFiles_WithABadLimitOrAnAfterThatIsNoFile_Is400SayingWhy()
    {
        await _server.StoreFileInStoreAsync("dev-a", "a.txt", [1]);

        var limit = await ProblemAsync(await Http.GetAsync("/api/files?limit=0"), HttpStatusCode.BadRequest);
        var after = await ProblemAsync(await Http.GetAsync("/api/files?after=file_gone"), HttpStatusCode.BadRequest);

        Assert.Contains("limit must be 1 to 1000", limit.Detail, StringComparison.Ordinal);
        Assert.Contains("no file 'file_gone'", after.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GetFile_ShowsItsMetadata()
    {
        var content = RandomNumberGenerator.GetBytes(3000);
        var id = await _server.StoreFileInStoreAsync("dev-a", "trace.bin", content, "application/vnd.tcpdump.pcap");

        var file = await Http.GetFromJsonAsync($"/api/files/{id}", FileAdminJsonContext.Default.DeviceFileInfo);

        Assert.Equal(id, file!.FileId);
        Assert.StartsWith("file_", file.FileId, StringComparison.Ordinal);
        Assert.Equal("dev-a", file.DeviceId);
        Assert.Equal("trace.bin", file.Name);
        Assert.Equal("application/vnd.tcpdump.pcap", file.ContentType);
        Assert.Equal(3000, file.Size);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(content)), file.Sha256);
        Assert.NotNull(file.ReceivedAt);
        Assert.NotNull(file.TransferId);
    }

    [Fact]
    public async Task Content_IsTheStoredBytes_WithItsLengthTypeHashAsETagAndNameAsAttachment()
    {
        var content = RandomNumberGenerator.GetBytes(300_000);
        var id = await _server.StoreFileInStoreAsync("dev-a", "camera still.jpg", content, "image/jpeg");

        using var response = await Http.GetAsync($"/api/files/{id}/content");
        var body = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(content, body);
        Assert.Equal(300_000, response.Content.Headers.ContentLength);
        Assert.Equal("image/jpeg", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal($"\"{Convert.ToHexStringLower(SHA256.HashData(content))}\"", response.Headers.ETag!.Tag);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(body)), response.Headers.ETag.Tag.Trim('"'));
        Assert.Equal("attachment", response.Content.Headers.ContentDisposition!.DispositionType);
        Assert.Equal("camera still.jpg", response.Content.Headers.ContentDisposition.FileNameStar ?? response.Content.Headers.ContentDisposition.FileName?.Trim('"'));
        Assert.Contains("bytes", response.Headers.AcceptRanges);
    }

    [Fact]
    public async Task Content_WithoutAContentType_IsServedAsOctetStream()
    {
        var id = await _server.StoreFileInStoreAsync("dev-a", "blob", [1, 2, 3]);

        using var response = await Http.GetAsync($"/api/files/{id}/content");

        Assert.Equal("application/octet-stream", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal([1, 2, 3], await response.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task Content_RangeRequests_AnswerTheFirstBytesOrTheLast_Or416WhenUnsatisfiable()
    {
        var content = RandomNumberGenerator.GetBytes(200_000);
        var id = await _server.StoreFileInStoreAsync("dev-a", "dump.bin", content);

        using var head = await GetAsync(id, r => r.Headers.Range = new RangeHeaderValue(0, 99));
        using var middle = await GetAsync(id, r => r.Headers.Range = new RangeHeaderValue(150_000, 150_009));
        using var suffix = await GetAsync(id, r => r.Headers.Range = new RangeHeaderValue(null, 50));
        using var beyond = await GetAsync(id, r => r.Headers.Range = new RangeHeaderValue(200_000, null));

        Assert.Equal(HttpStatusCode.PartialContent, head.StatusCode);
        Assert.Equal(content[..100], await head.Content.ReadAsByteArrayAsync());
        Assert.Equal("bytes 0-99/200000", head.Content.Headers.ContentRange!.ToString());
        Assert.Equal(100, head.Content.Headers.ContentLength);
        Assert.Equal(content[150_000..150_010], await middle.Content.ReadAsByteArrayAsync());
        Assert.Equal(HttpStatusCode.PartialContent, suffix.StatusCode);
        Assert.Equal(content[^50..], await suffix.Content.ReadAsByteArrayAsync());
        Assert.Equal("bytes 199950-199999/200000", suffix.Content.Headers.ContentRange!.ToString());
        Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, beyond.StatusCode);
        Assert.Equal("bytes */200000", beyond.Content.Headers.ContentRange!.ToString());
    }

    [Fact]
    public async Task Content_WithIfNoneMatchOfItsHash_Is304_AndWithAnotherIsTheBytes()
    {
        var content = RandomNumberGenerator.GetBytes(5000);
        var id = await _server.StoreFileInStoreAsync("dev-a", "config.json", content);
        var etag = $"\"{Convert.ToHexStringLower(SHA256.HashData(content))}\"";

        using var same = await GetAsync(id, r => r.Headers.IfNoneMatch.Add(new EntityTagHeaderValue(etag)));
        using var other = await GetAsync(id, r => r.Headers.IfNoneMatch.Add(new EntityTagHeaderValue($"\"{new string('0', 64)}\"")));

        Assert.Equal(HttpStatusCode.NotModified, same.StatusCode);
        Assert.Empty(await same.Content.ReadAsByteArrayAsync());
        Assert.Equal(etag, same.Headers.ETag!.Tag);
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        Assert.Equal(content, await other.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task DeleteFile_RemovesItsRecordAndBytes_AndFreesTheDevicesQuota_ThenIs404()
    {
        var kept = await _server.StoreFileInStoreAsync("dev-a", "kept.txt", new byte[1000]);
        var id = await _server.StoreFileInStoreAsync("dev-a", "old.log", new byte[4000]);
        var files = _server.Host.Services.GetRequiredService<IFileStore>();
        var blobs = _server.Host.Services.GetRequiredService<IBlobStore>();
        var blobKey = (await files.GetFileAsync(id))!.BlobKey;
        Assert.Equal(new DeviceFileUsage(5000, 0), await files.FileUsageAsync("dev-a"));

        using var deleted = await Http.DeleteAsync($"/api/files/{id}");
        var body = await deleted.Content.ReadFromJsonAsync(FileAdminJsonContext.Default.DeviceFileInfo);

        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        Assert.Equal("old.log", body!.Name);
        Assert.Null(blobs.OpenRead(blobKey));
        Assert.Equal(new DeviceFileUsage(1000, 0), await files.FileUsageAsync("dev-a"));
        await ProblemAsync(await Http.GetAsync($"/api/files/{id}"), HttpStatusCode.NotFound);
        await ProblemAsync(await Http.GetAsync($"/api/files/{id}/content"), HttpStatusCode.NotFound);
        await ProblemAsync(await Http.DeleteAsync($"/api/files/{id}"), HttpStatusCode.NotFound);
        var left = await Http.GetFromJsonAsync("/api/files", FileAdminJsonContext.Default.ItemListDeviceFileInfo);
        Assert.Equal([kept], left!.Items.Select(f => f.FileId!));
    }

    [Fact]
    public async Task UnknownFile_Is404ProblemNamingIt_OnEveryRoute()
    {
        foreach (var (method, path) in new[] { (HttpMethod.Get, "/api/files/file_none"), (HttpMethod.Get, "/api/files/file_none/content"), (HttpMethod.Delete, "/api/files/file_none") })
        {
            var problem = await ProblemAsync(await Http.SendAsync(new HttpRequestMessage(method, path)), HttpStatusCode.NotFound);
            Assert.Equal("no file 'file_none'", problem.Detail);
        }
    }

    [Fact]
    public async Task EveryFileRoute_WithoutTheAdminKey_Is401_AndDeletesNothing()
    {
        var id = await _server.StoreFileInStoreAsync("dev-a", "secret.txt", [42]);
        using var anonymous = new HttpClient { BaseAddress = _server.HttpEndpoint };

        foreach (var (method, path) in new[] { (HttpMethod.Get, "/api/files"), (HttpMethod.Get, $"/api/files/{id}"), (HttpMethod.Get, $"/api/files/{id}/content"), (HttpMethod.Delete, $"/api/files/{id}"), (HttpMethod.Get, "/api/transfers") })
        {
            using var response = await anonymous.SendAsync(new HttpRequestMessage(method, path));
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        using var still = await Http.GetAsync($"/api/files/{id}/content");
        Assert.Equal([42], await still.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task Transfers_ListTheUploadsUnderWay_WithTheirProgress_ByDevice()
    {
        var transferId = await _server.StartTransferInStoreAsync("dev-a", "big.bin", new byte[5 * 1024], chunks: 2);
        await _server.StoreFileInStoreAsync("dev-a", "done.bin", [1]);

        var all = await Http.GetFromJsonAsync("/api/transfers", FileAdminJsonContext.Default.ItemListTransferInfo);
        var other = await Http.GetFromJsonAsync("/api/transfers?device=dev-b", FileAdminJsonContext.Default.ItemListTransferInfo);

        var transfer = Assert.Single(all!.Items);
        Assert.Equal(transferId, transfer.TransferId);
        Assert.Equal("dev-a", transfer.DeviceId);
        Assert.Equal("file", transfer.Kind);
        Assert.Equal("big.bin", transfer.Name);
        Assert.Equal(5 * 1024, transfer.Size);
        Assert.Equal(2, transfer.Received);
        Assert.Equal(5, transfer.ChunkCount);
        Assert.Equal(1024, transfer.ChunkSize);
        Assert.NotNull(transfer.StartedAt);
        Assert.NotNull(transfer.UpdatedAt);
        Assert.Empty(other!.Items);
        await ProblemAsync(await Http.GetAsync("/api/transfers?limit=1001"), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task AFileSentInChunksOverMqtt_ShowsAsATransferUntilItsLastChunk_ThenIsServedWithTheBytesSent()
    {
        using var states = new TempDirectory();
        var token = await _server.CreateTokenAsync();
        string deviceId, accessToken;
        await using (var device = DeviceHarness.Create(_server.MqttEndpoint, "files-api", states.Combine("device"), token.Token, output))
        {
            deviceId = (await device.Registration.StartAsync()).DeviceId;
            accessToken = (await device.Store.LoadAsync())!.AccessToken!;
        }

        await using var client = await RawMqttClient.ConnectAsync(_server.MqttEndpoint, "files-api", deviceId, accessToken);
        var whole = Chunks.RandomBytes((3 * 4096) + 17, 14);
        var chunks = Chunks.OfFile(deviceId, "tr-api", whole, 4096, name: "boot.log");
        foreach (var chunk in chunks[..^1])
        {
            Assert.Equal(MQTTnet.MqttClientPublishReasonCode.Success, (await client.Client.PublishAsync(chunk)).ReasonCode);
        }

        var underWay = await Http.GetFromJsonAsync($"/api/transfers?device={deviceId}", FileAdminJsonContext.Default.ItemListTransferInfo);
        Assert.Equal(MQTTnet.MqttClientPublishReasonCode.Success, (await client.Client.PublishAsync(chunks[^1])).ReasonCode);
        var files = await Http.GetFromJsonAsync($"/api/files?device={deviceId}", FileAdminJsonContext.Default.ItemListDeviceFileInfo);
        using var content = await Http.GetAsync($"/api/files/{Assert.Single(files!.Items).FileId}/content");

        var transfer = Assert.Single(underWay!.Items);
        Assert.Equal(("tr-api", 3, 4), (transfer.TransferId, transfer.Received, transfer.ChunkCount));
        Assert.Empty((await Http.GetFromJsonAsync($"/api/transfers?device={deviceId}", FileAdminJsonContext.Default.ItemListTransferInfo))!.Items);
        Assert.Equal(("boot.log", "text/plain", (long)whole.Length), (files.Items[0].Name, files.Items[0].ContentType, files.Items[0].Size));
        Assert.Equal(whole, await content.Content.ReadAsByteArrayAsync());
        Assert.Equal($"\"{Chunks.Sha256(whole)}\"", content.Headers.ETag!.Tag);
    }

    private async Task<HttpResponseMessage> GetAsync(string id, Action<HttpRequestMessage> configure)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, $"/api/files/{id}/content");
        configure(request);
        return await Http.SendAsync(request);
    }

    private static async Task<IReadOnlyList<T>> Items<T>(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var type = (System.Text.Json.Serialization.Metadata.JsonTypeInfo<ItemList<T>>)FileAdminJsonContext.Default.GetTypeInfo(typeof(ItemList<T>))!;
        return (await response.Content.ReadFromJsonAsync(type))!.Items;
    }

    private static string NextLink(HttpResponseMessage response)
    {
        var link = Assert.Single(response.Headers.GetValues("Link"));
        Assert.EndsWith("; rel=\"next\"", link, StringComparison.Ordinal);
        return link[1..link.IndexOf('>', StringComparison.Ordinal)];
    }

    private static async Task<ApiProblem> ProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        using (response)
        {
            Assert.Equal(status, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
            return (await response.Content.ReadFromJsonAsync(AdminJsonContext.Default.ApiProblem))!;
        }
    }
}
