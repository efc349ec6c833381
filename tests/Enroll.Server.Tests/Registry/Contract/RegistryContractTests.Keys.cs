using Enroll.Server.Registry;

namespace Enroll.Server.Tests.Registry.Contract;

public abstract partial class RegistryContractTests
{
    [Fact]
    public async Task AddKey_ListsTheKeysOfEachUseOldestFirst_WithEveryFieldKept()
    {
        var first = Key(KeyUse.Signing);
        var encryption = Key(KeyUse.Encryption);
        Clock.Advance(TimeSpan.FromMinutes(1));
        var second = Key(KeyUse.Signing);

        Assert.True(await Registry.AddKeyAsync(first));
        Assert.True(await Registry.AddKeyAsync(encryption));
        Assert.True(await Registry.AddKeyAsync(second));

        AssertKeys([first, second], await Registry.ListKeysAsync(KeyUse.Signing));
        AssertKeys([encryption], await Registry.ListKeysAsync(KeyUse.Encryption));
    }

    [Fact]
    public async Task AddKey_OrdersByAddition_EvenWhenKeysShareACreationTime()
    {
        var keys = Enumerable.Range(0, 5).Select(_ => Key(KeyUse.Signing)).ToList();

        foreach (var key in keys)
        {
            await Registry.AddKeyAsync(key);
        }

        Assert.Equal(keys.Select(k => k.KeyId), (await Registry.ListKeysAsync(KeyUse.Signing)).Select(k => k.KeyId));
    }

    [Fact]
    public async Task AddKey_ASecondImportOfTheSameKeyId_ChangesNothing()
    {
        var key = Key(KeyUse.Signing);
        await Registry.AddKeyAsync(key);

        var again = await Registry.AddKeyAsync(key with { SealedPrivateKey = [9, 9, 9], KekId = "other", CreatedAt = Now.AddDays(1) });

        Assert.False(again);
        AssertKeys([key], await Registry.ListKeysAsync(KeyUse.Signing));
    }

    [Fact]
    public async Task RotateKeys_AddsTheNewKeysAndDeletesExactlyThoseBeyondTheKeptCount()
    {
        var signing = Enumerable.Range(0, 3).Select(_ => Key(KeyUse.Signing)).ToList();
        var encryption = Enumerable.Range(0, 2).Select(_ => Key(KeyUse.Encryption)).ToList();
        foreach (var key in signing.Concat(encryption))
        {
            await Registry.AddKeyAsync(key);
        }

        var newSigning = Key(KeyUse.Signing);
        var newEncryption = Key(KeyUse.Encryption);
        var pruned = await Registry.RotateKeysAsync([newSigning, newEncryption], keep: 3);

        // Four signing keys, three kept: the oldest goes. Three encryption keys: all kept.
        Assert.Equal(1, pruned);
        AssertKeys([signing[1], signing[2], newSigning], await Registry.ListKeysAsync(KeyUse.Signing));
        AssertKeys([encryption[0], encryption[1], newEncryption], await Registry.ListKeysAsync(KeyUse.Encryption));

        // Four of each now, one of each kept.
        Assert.Equal(6, await Registry.RotateKeysAsync([Key(KeyUse.Signing), Key(KeyUse.Encryption)], keep: 1));
        Assert.Single(await Registry.ListKeysAsync(KeyUse.Signing));
        Assert.Single(await Registry.ListKeysAsync(KeyUse.Encryption));
    }

    [Fact]
    public async Task CreateFirstKeys_OnAnEmptyStore_AddsThem_AndOnceKeysExist_AddsNothing()
    {
        var first = new[] { Key(KeyUse.Signing), Key(KeyUse.Encryption) };

        Assert.True(await Registry.CreateFirstKeysAsync(first));
        Assert.False(await Registry.CreateFirstKeysAsync([Key(KeyUse.Signing), Key(KeyUse.Encryption)]));

        AssertKeys([first[0]], await Registry.ListKeysAsync(KeyUse.Signing));
        AssertKeys([first[1]], await Registry.ListKeysAsync(KeyUse.Encryption));
    }

    [Fact]
    public async Task CreateFirstKeys_ManyAtOnceOnAnEmptyStore_StoresOneSet_OneKeyPerUse()
    {
        var sets = Enumerable.Range(0, 12).Select(_ => new[] { Key(KeyUse.Signing), Key(KeyUse.Encryption) }).ToList();

        var created = await Task.WhenAll(sets.Select(set => Task.Run(() => Registry.CreateFirstKeysAsync(set))));

        var winner = sets[Assert.Single(Enumerable.Range(0, created.Length), i => created[i])];
        AssertKeys([winner[0]], await Registry.ListKeysAsync(KeyUse.Signing));
        AssertKeys([winner[1]], await Registry.ListKeysAsync(KeyUse.Encryption));
    }

    [Fact]
    public async Task CreateFirstKeys_WhenOnlyImportedKeysExist_AddsNothing()
    {
        var imported = Key(KeyUse.Signing);
        await Registry.AddKeyAsync(imported);

        Assert.False(await Registry.CreateFirstKeysAsync([Key(KeyUse.Signing), Key(KeyUse.Encryption)]));

        AssertKeys([imported], await Registry.ListKeysAsync(KeyUse.Signing));
        Assert.Empty(await Registry.ListKeysAsync(KeyUse.Encryption));
    }

    /// <summary>A stored key as the rings make one: a unique ID, sealed bytes, a KEK ID.</summary>
    private StoredKey Key(KeyUse use)
    {
        var id = NewId(use == KeyUse.Signing ? "sig" : "enc");
        return new StoredKey(id, use, Now, [.. System.Text.Encoding.UTF8.GetBytes(id), 0, 1, 2, 255], "kek-1");
    }

    private static void AssertKeys(IReadOnlyList<StoredKey> expected, IReadOnlyList<StoredKey> actual)
    {
        Assert.Equal(expected.Select(k => k.KeyId), actual.Select(k => k.KeyId));
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Use, actual[i].Use);
            Assert.Equal(expected[i].CreatedAt, actual[i].CreatedAt);
            Assert.Equal(expected[i].SealedPrivateKey, actual[i].SealedPrivateKey);
            Assert.Equal(expected[i].KekId, actual[i].KekId);
        }
    }
}
