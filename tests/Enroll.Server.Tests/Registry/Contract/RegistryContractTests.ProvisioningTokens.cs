using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    [Fact]
    public async Task ProvisioningToken_Created_IsFoundWithEveryFieldAndNoUses()
    {
        var token = new ProvisioningTokenRecord
        {
            Id = "pt-all",
            SecretHash = [9, 8, 7, 6, 5],
            OrgId = "acme",
            Description = "line 3",
            AutoApprove = true,
            MaxUses = 10,
            Uses = 4,
            ExpiresAt = T0.AddDays(7),
            RegistrationTokenLifetime = TimeSpan.FromDays(30),
            CreatedAt = T0,
            RevokedAt = T0.AddHours(1),
        };

        await Registry.CreateProvisioningTokenAsync(token);
        var found = await Registry.FindProvisioningTokenAsync("pt-all");

        Assert.NotNull(found);
        Assert.Equal(token.SecretHash, found.SecretHash);
        Assert.Equal(token with { SecretHash = found.SecretHash, Uses = 0, RevokedAt = null }, found);
    }

    [Fact]
    public async Task ProvisioningToken_Unknown_IsNotFound()
    {
        Assert.Null(await Registry.FindProvisioningTokenAsync("pt-missing"));
        Assert.False(await Registry.RevokeProvisioningTokenAsync("pt-missing", Now));
    }

    [Fact]
    public async Task ProvisioningToken_WithAnIdThatExists_IsRefused()
    {
        var token = await CreateTokenAsync();

        await Assert.ThrowsAnyAsync<Exception>(() => Registry.CreateProvisioningTokenAsync(token with { OrgId = "other" }));
        Assert.Equal("acme", (await Registry.FindProvisioningTokenAsync(token.Id))!.OrgId);
    }

    [Fact]
    public async Task ProvisioningTokens_AreListedOldestFirst_RevokedOnesIncluded()
    {
        var newest = await CreateTokenAsync(createdAt: T0.AddMinutes(2));
        var oldest = await CreateTokenAsync(createdAt: T0);
        var middle = await CreateTokenAsync(createdAt: T0.AddMinutes(1));
        await Registry.RevokeProvisioningTokenAsync(middle.Id, Now);

        var listed = await Registry.ListProvisioningTokensAsync();

        Assert.Equal([oldest.Id, middle.Id, newest.Id], listed.Select(t => t.Id));
    }

    [Fact]
    public async Task ProvisioningToken_Revoked_KeepsTheFirstRevocationInstant()
    {
        var token = await CreateTokenAsync();

        Assert.True(await Registry.RevokeProvisioningTokenAsync(token.Id, T0.AddMinutes(5)));
        Assert.True(await Registry.RevokeProvisioningTokenAsync(token.Id, T0.AddMinutes(9)));

        Assert.Equal(T0.AddMinutes(5), (await Registry.FindProvisioningTokenAsync(token.Id))!.RevokedAt);
    }
}
